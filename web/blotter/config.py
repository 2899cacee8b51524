"""Tuning of the blotter stream, read from `BLOTTER_*` environment variables.

Each knob trades latency, memory or fairness, so operators can move them without a release; the
defaults suit a trading desk (tens to a few thousand subscribers per worker, changes within tens
of milliseconds). Errors name the variable, like the rest of the configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from app.config import env_flag, env_number


@dataclass(frozen=True, slots=True)
class BlotterConfig:
    """Limits and intervals of the WebSocket stream of one worker."""

    #: Changes are coalesced per connection for at most this long before a frame leaves.
    batch_interval_s: float = 0.02
    #: Once caught up, the change feed polls the change topic at most this often, so a steady
    #: trickle of changes is read in batches rather than one poll per change.
    feed_poll_interval_s: float = 0.01
    #: Rows per `snapshot`/`changes` message.
    max_batch_rows: int = 500
    #: Credits of a subscription that did not say (`credits` omitted on subscribe).
    default_credits: int = 1000
    #: Ceiling of the credits a subscription may hold at once (subscribe + requests).
    max_credits: int = 1_000_000
    #: Distinct keys a subscription may have pending (conflated) before SLOW_CONSUMER.
    max_pending: int = 10_000
    #: Subscriptions one connection may hold at once.
    max_subscriptions: int = 100
    #: Control messages (acks, errors, pongs) queued for a client that does not read, before
    #: the connection is closed: a client spamming pings must not grow server memory.
    max_control_queue: int = 1000
    #: permessage-deflate when the client offers it.
    compress: bool = True
    #: With permessage-deflate, frames shorter than this go out uncompressed (RFC 7692 lets a
    #: sender choose per message): a one-row frame gains little from deflate, and compressing
    #: it per connection was a fifth of the worker's CPU at 1,000 subscribers. 0 compresses all.
    compress_min_bytes: int = 1024
    #: Seconds between server WebSocket pings; a client that does not answer within half of it
    #: is disconnected. 0 disables.
    heartbeat_s: float = 20.0
    #: Largest client message accepted; larger ones close the connection with 1009.
    max_message_bytes: int = 64 * 1024
    #: Frames the socket has not accepted after this long: the connection is reset.
    send_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BlotterConfig:
        """The configuration from `env` (default: the process environment); ConfigError."""
        env = os.environ if env is None else env
        d = cls()
        return cls(
            batch_interval_s=env_number(env, "BLOTTER_BATCH_INTERVAL_MS", d.batch_interval_s * 1000,
                                     0, 10_000) / 1000,
            feed_poll_interval_s=env_number(env, "BLOTTER_FEED_POLL_INTERVAL_MS",
                                            d.feed_poll_interval_s * 1000, 0, 1000) / 1000,
            max_batch_rows=int(env_number(env, "BLOTTER_MAX_BATCH_ROWS", d.max_batch_rows, 1,
                                       100_000)),
            default_credits=int(env_number(env, "BLOTTER_DEFAULT_CREDITS", d.default_credits, 0,
                                        10**9)),
            max_credits=int(env_number(env, "BLOTTER_MAX_CREDITS", d.max_credits, 1, 10**9)),
            max_pending=int(env_number(env, "BLOTTER_MAX_PENDING", d.max_pending, 1, 10**8)),
            max_subscriptions=int(env_number(env, "BLOTTER_MAX_SUBSCRIPTIONS", d.max_subscriptions,
                                          1, 100_000)),
            max_control_queue=int(env_number(env, "BLOTTER_MAX_CONTROL_QUEUE", d.max_control_queue,
                                          10, 10**6)),
            compress=env_flag(env, "BLOTTER_WS_COMPRESS", d.compress),
            compress_min_bytes=int(env_number(env, "BLOTTER_WS_COMPRESS_MIN_BYTES",
                                           d.compress_min_bytes, 0, 64 * 1024 * 1024)),
            heartbeat_s=env_number(env, "BLOTTER_WS_HEARTBEAT_S", d.heartbeat_s, 0, 3600),
            max_message_bytes=int(env_number(env, "BLOTTER_WS_MAX_MESSAGE_BYTES",
                                          d.max_message_bytes, 1024, 64 * 1024 * 1024)),
            send_timeout_s=env_number(env, "BLOTTER_SEND_TIMEOUT_S", d.send_timeout_s, 0.1, 3600),
        )
