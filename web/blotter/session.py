"""One client connection's protocol state, without the socket.

The reader side calls :meth:`Session.handle_text` for every client frame; the writer side calls
:meth:`Session.collect` for the frames to send. Between the two sit only in-memory queues that
are bounded: control messages by a count, row data by the subscriptions' conflation and their
SLOW_CONSUMER bound. Nothing here awaits, so the fan-out can mark a session dirty in O(1) and a
slow socket only ever delays its own writer.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from app import metrics
from app.domain.filters import FilterError, compile_filter, restrict_to_accounts
from app.metadata import blotter_object_type
from web.blotter import protocol
from web.blotter.config import BlotterConfig
from web.blotter.principal import Principal
from web.blotter.protocol import ProtocolError
from web.blotter.subscriptions import OVERFLOWED, FanOut, Subscription

log = logging.getLogger(__name__)

#: Called before a subscription is created; raise ProtocolError (e.g. RATE_LIMITED) to refuse it.
SubscribeGuard = Callable[[Principal, protocol.Subscribe], None]


class Session:
    """Subscriptions and outbound queues of one WebSocket connection."""

    def __init__(
        self,
        fanout: FanOut,
        principal: Principal,
        config: BlotterConfig,
        *,
        wake: Callable[[], None] = lambda: None,
        subscribe_guard: SubscribeGuard | None = None,
    ) -> None:
        self.fanout = fanout
        self.principal = principal
        self.config = config
        self._wake = wake
        self._guard = subscribe_guard
        self.subscriptions: dict[str, Subscription] = {}
        self._control: deque[bytes] = deque()
        self._dirty: OrderedDict[Subscription, None] = OrderedDict()
        #: Set when the connection must be closed (after the queued frames): a close code.
        self.close_code: int | None = None
        self.close_reason = ""

    # -- inbound -----------------------------------------------------------------------------
    def handle_text(self, data: str | bytes) -> None:
        """Act on one client text frame; every failure becomes an `error` message."""
        try:
            message = protocol.parse_client_message(data)
            self._handle(message)
        except ProtocolError as exc:
            self.send_error(exc.code, exc.message, exc.sub_id, exc.path)
        except Exception:  # a server bug: report it, keep the connection
            log.exception("blotter message handling failed")
            self.send_error(protocol.INTERNAL_ERROR, "the server failed to handle this message")

    def handle_binary(self) -> None:
        self.send_error(protocol.BAD_MESSAGE, "binary frames are not supported; send JSON text")

    def _handle(self, message: protocol.ClientMessage) -> None:
        if isinstance(message, protocol.Ping):
            self._queue(protocol.pong_frame(message.nonce))
        elif isinstance(message, protocol.Subscribe):
            self._subscribe(message)
        elif isinstance(message, protocol.Request):
            self._subscription(message.sub_id).grant(message.n)
        else:
            sub = self._subscription(message.sub_id)
            self._drop(sub)
            self._queue(protocol.unsubscribed_frame(sub.sub_id))

    def _subscription(self, sub_id: str) -> Subscription:
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise ProtocolError(
                protocol.UNKNOWN_SUBSCRIPTION, "no active subscription with this id", sub_id
            )
        return sub

    def _subscribe(self, message: protocol.Subscribe) -> None:
        sub_id = message.sub_id
        if sub_id in self.subscriptions:
            raise ProtocolError(
                protocol.DUPLICATE_SUBSCRIPTION, "a subscription with this id is active", sub_id
            )
        if len(self.subscriptions) >= self.config.max_subscriptions:
            raise ProtocolError(
                protocol.TOO_MANY_SUBSCRIPTIONS,
                f"at most {self.config.max_subscriptions} subscriptions per connection",
                sub_id,
            )
        spec = blotter_object_type(message.object_type)
        if spec is None:
            raise ProtocolError(
                protocol.UNKNOWN_OBJECT_TYPE,
                "objectType must be one of the types of GET /v1/trade-blotter/metadata",
                sub_id,
            )
        try:
            compiled = compile_filter(message.filter, spec)
        except FilterError as exc:
            raise ProtocolError(exc.code, exc.message, sub_id, _filter_path(exc.path)) from None
        visible = restrict_to_accounts(compiled, self.principal.accounts)
        if self._guard is not None:
            self._guard(self.principal, message)
        credits = self.config.default_credits if message.credits is None else message.credits
        sub = Subscription(
            sub_id,
            spec.name,
            credits,
            max_credits=self.config.max_credits,
            max_pending=self.config.max_pending,
            notify=self._mark,
        )
        self.subscriptions[sub_id] = sub
        metrics.WS_SUBSCRIPTIONS.labels(object_type=spec.name).inc()
        # The ack is queued before the snapshot can be: control frames leave first.
        self._queue(protocol.subscribed_frame(sub_id, spec.name, sub.credits, compiled.spec))
        self.fanout.add(sub, visible)

    def _drop(self, sub: Subscription) -> None:
        if self.subscriptions.get(sub.sub_id) is sub:
            del self.subscriptions[sub.sub_id]
            metrics.WS_SUBSCRIPTIONS.labels(object_type=sub.object_type).dec()
        self.fanout.remove(sub)
        self._dirty.pop(sub, None)
        sub.queued = False
        sub.close()

    # -- outbound ----------------------------------------------------------------------------
    def send_error(
        self, code: str, message: str, sub_id: str | None = None, path: str = ""
    ) -> None:
        metrics.WS_ERRORS.labels(code=code).inc()
        self._queue(protocol.error_frame(code, message, sub_id, path))

    def send_control(self, frame: bytes) -> None:
        """Queue a control frame (welcome, acks, errors, pongs); they leave before row data."""
        self._queue(frame)

    def _queue(self, frame: bytes) -> None:
        if len(self._control) >= self.config.max_control_queue:
            self.request_close(protocol.CLOSE_SLOW_CONNECTION, "client is not reading")
            return
        self._control.append(frame)
        self._wake()

    def _mark(self, sub: Subscription) -> None:
        if sub not in self._dirty:
            self._dirty[sub] = None
            sub.queued = True
            self._wake()

    def request_close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self._wake()

    def has_work(self) -> bool:
        return bool(self._control) or bool(self._dirty)

    def collect(self, max_frames: int = 16) -> list[bytes]:
        """The next frames to send: control messages first, then row data of the subscriptions
        that can send, round-robin so one large snapshot does not starve the others."""
        frames: list[bytes] = []
        control = self._control
        while control and len(frames) < max_frames:
            frames.append(control.popleft())
        dirty = self._dirty
        for sub in list(dirty):
            if len(frames) >= max_frames:
                break
            del dirty[sub]
            sub.queued = False
            if sub.state is OVERFLOWED:
                self._slow_consumer(sub, frames)
                continue
            frames.extend(sub.drain(self.config.max_batch_rows, max_frames - len(frames)))
            if sub.sendable():
                dirty[sub] = None  # back of the line
                sub.queued = True
        return frames

    def _slow_consumer(self, sub: Subscription, frames: list[bytes]) -> None:
        self._drop(sub)
        metrics.WS_SLOW_CONSUMER_CLOSES.inc()
        metrics.WS_ERRORS.labels(code=protocol.SLOW_CONSUMER).inc()
        frames.append(
            protocol.error_frame(
                protocol.SLOW_CONSUMER,
                f"more than {self.config.max_pending} rows pending without credit; "
                "subscription closed (subscribe again to get a fresh snapshot)",
                sub.sub_id,
            )
        )

    def close(self) -> None:
        """The connection is gone: release every subscription."""
        for sub in list(self.subscriptions.values()):
            self._drop(sub)
        self._control.clear()
        self._dirty.clear()


def _filter_path(path: str) -> str:
    """A filter error's path, relative to the subscribe message."""
    return f"filter.{path}" if path and not path.startswith("[") else f"filter{path}"


def limits_json(config: BlotterConfig) -> dict[str, Any]:
    """The limits announced in `welcome`, so clients can size their credits and messages."""
    return {
        "defaultCredits": config.default_credits,
        "maxCredits": config.max_credits,
        "maxPending": config.max_pending,
        "maxSubscriptions": config.max_subscriptions,
        "maxBatchRows": config.max_batch_rows,
        "maxMessageBytes": config.max_message_bytes,
        "batchIntervalMs": round(config.batch_interval_s * 1000, 3),
        "heartbeatSeconds": config.heartbeat_s,
    }
