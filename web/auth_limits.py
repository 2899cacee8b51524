"""Per-user limits: how many sockets, how many subscriptions, how fast a user may subscribe.

A subscription costs a snapshot scan and a place in the fan-out index, so one user (or one buggy
client in a reconnect loop) could otherwise starve a worker that serves a whole trading floor.
Limits are keyed by the token's subject, so more connections do not buy more budget.

Everything here runs on the event loop (no locks) and takes an injectable monotonic clock, so the
tests drive time instead of sleeping.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from app import metrics
from web.auth_config import AuthLimits

Clock = Callable[[], float]

#: Buckets are pruned every this many checks; only full buckets go, which loses no state.
_PRUNE_EVERY = 1024


class Decision(enum.Enum):
    """What to do with one client message."""

    ALLOW = "allow"
    #: Refuse this message with an error (RATE_LIMITED); keep the connection.
    RATE_LIMITED = "rate_limited"
    #: The client kept going after repeated refusals: close the connection (1008).
    CLOSE = "close"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class RateLimiter:
    """A token bucket per user: `rate_per_s` sustained, `burst` at once.

    The bucket is shared by all connections of a user; the escalation to CLOSE is counted per
    connection by a :class:`RateGate` (see :meth:`gate`), so one abusive socket is closed without
    closing the user's other, well-behaved ones.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        close_after: int = 10,
        clock: Clock = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or close_after < 0:
            raise ValueError("rate_per_s must be > 0, burst >= 1 and close_after >= 0")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.close_after = close_after
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._checks = 0

    @classmethod
    def for_subscribes(cls, limits: AuthLimits, clock: Clock = time.monotonic) -> RateLimiter:
        """The limiter of subscribe/unsubscribe messages (WS_SUBSCRIBE_*)."""
        return cls(
            limits.subscribe_rate_per_s,
            limits.subscribe_burst,
            close_after=limits.close_after_rate_limited,
            clock=clock,
        )

    @classmethod
    def for_messages(cls, limits: AuthLimits, clock: Clock = time.monotonic) -> RateLimiter:
        """The limiter of all client messages (WS_MESSAGE_*)."""
        return cls(
            limits.message_rate_per_s,
            limits.message_burst,
            close_after=limits.close_after_rate_limited,
            clock=clock,
        )

    def allow(self, user: str) -> bool:
        """Take one token from `user`'s bucket; False (and nothing taken) when it is empty."""
        now = self._clock()
        self._checks += 1
        if self._checks % _PRUNE_EVERY == 0:
            self._prune(now)
        bucket = self._buckets.get(user)
        if bucket is None:
            bucket = self._buckets[user] = _Bucket(float(self.burst), now)
        else:
            elapsed = max(0.0, now - bucket.updated_at)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
            bucket.updated_at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def retry_after(self, user: str) -> float:
        """Seconds until `user` has a token again (0 when it has one now)."""
        bucket = self._buckets.get(user)
        if bucket is None:
            return 0.0
        elapsed = max(0.0, self._clock() - bucket.updated_at)
        tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
        return max(0.0, (1.0 - tokens) / self.rate_per_s)

    def gate(self, user: str) -> RateGate:
        """The per-connection view of this limiter for `user`."""
        return RateGate(self, user)

    @property
    def tracked_users(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        full = [
            user
            for user, bucket in self._buckets.items()
            if bucket.tokens + max(0.0, now - bucket.updated_at) * self.rate_per_s >= self.burst
        ]
        for user in full:
            del self._buckets[user]


class RateGate:
    """One connection's rate check with escalation.

    :meth:`check` answers ALLOW while the user has tokens. Refused messages answer RATE_LIMITED
    until `close_after` of them came in a row; the next refused one answers CLOSE. An allowed
    message resets the count, so a client that backs off after an error keeps its connection.
    """

    def __init__(self, limiter: RateLimiter, user: str) -> None:
        self.limiter = limiter
        self.user = user
        #: Refused messages since the last allowed one.
        self.consecutive_refusals = 0

    def check(self) -> Decision:
        if self.limiter.allow(self.user):
            self.consecutive_refusals = 0
            return Decision.ALLOW
        metrics.RATE_LIMITED.inc()
        self.consecutive_refusals += 1
        if self.consecutive_refusals > self.limiter.close_after:
            return Decision.CLOSE
        return Decision.RATE_LIMITED


class ConnectionLimiter:
    """Concurrent connections and subscriptions per user.

    Usage on a WebSocket handshake (before the upgrade)::

        slot = limiter.acquire(principal.subject)
        if slot is None: return rate_limited_response(...)   # 429
        with slot:                     # releases the connection and all its subscriptions
            ... if not slot.add_subscription(): send RATE_LIMITED error
            ... slot.remove_subscription()
    """

    def __init__(self, max_connections: int, max_subscriptions: int) -> None:
        if max_connections < 1 or max_subscriptions < 1:
            raise ValueError("limits must be >= 1")
        self.max_connections = max_connections
        self.max_subscriptions = max_subscriptions
        self._connections: dict[str, int] = {}
        self._subscriptions: dict[str, int] = {}

    @classmethod
    def from_limits(cls, limits: AuthLimits) -> ConnectionLimiter:
        return cls(limits.max_connections_per_user, limits.max_subscriptions_per_user)

    def acquire(self, user: str) -> ConnectionSlot | None:
        """A connection slot for `user`, or None when the user has `max_connections` open."""
        if self._connections.get(user, 0) >= self.max_connections:
            metrics.RATE_LIMITED.inc()
            return None
        self._connections[user] = self._connections.get(user, 0) + 1
        return ConnectionSlot(self, user)

    def connections(self, user: str) -> int:
        return self._connections.get(user, 0)

    def subscriptions(self, user: str) -> int:
        return self._subscriptions.get(user, 0)

    def _add_subscription(self, user: str) -> bool:
        if self._subscriptions.get(user, 0) >= self.max_subscriptions:
            metrics.RATE_LIMITED.inc()
            return False
        self._subscriptions[user] = self._subscriptions.get(user, 0) + 1
        return True

    def _remove_subscriptions(self, user: str, count: int) -> None:
        _decrement(self._subscriptions, user, count)

    def _release(self, user: str) -> None:
        _decrement(self._connections, user, 1)


class ConnectionSlot:
    """One open connection of a user, and the subscriptions it holds against the user's limit."""

    def __init__(self, limiter: ConnectionLimiter, user: str) -> None:
        self.limiter = limiter
        self.user = user
        self.subscriptions = 0
        self.released = False

    def add_subscription(self) -> bool:
        """Count one more subscription; False (nothing counted) over the user's limit or after
        the slot was released."""
        if self.released or not self.limiter._add_subscription(self.user):
            return False
        self.subscriptions += 1
        return True

    def remove_subscription(self) -> None:
        """Give back one subscription of this connection (no-op when it holds none)."""
        if self.subscriptions > 0 and not self.released:
            self.subscriptions -= 1
            self.limiter._remove_subscriptions(self.user, 1)

    def release(self) -> None:
        """Give back the connection and every subscription it still holds; idempotent, so a
        `finally` after an abrupt disconnect can always call it."""
        if self.released:
            return
        self.released = True
        self.limiter._remove_subscriptions(self.user, self.subscriptions)
        self.subscriptions = 0
        self.limiter._release(self.user)

    def __enter__(self) -> ConnectionSlot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _decrement(counts: dict[str, int], user: str, by: int) -> None:
    """Lower a count, dropping the entry at zero so memory follows the active users only."""
    left = counts.get(user, 0) - by
    if left > 0:
        counts[user] = left
    else:
        counts.pop(user, None)
