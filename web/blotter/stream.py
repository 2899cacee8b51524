"""`WS /v1/trade-blotter/stream`: one reader loop and one writer task per connection.

The reader applies client messages to the :class:`Session` synchronously. The writer is the only
code that awaits this client's socket: it wakes when the session has work, waits out the batch
interval (so bursts leave as few large frames, while a lone change leaves at once), and sends.
A socket that stops draining blocks only its own writer; past `send_timeout_s` the connection is
reset, and meanwhile its subscriptions conflate and hit their SLOW_CONSUMER bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import time
import weakref
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from app import metrics
from web.auth_http import rate_limited_response
from web.auth_limits import Decision, RateLimiter
from web.auth_principal import Principal
from web.blotter import protocol
from web.blotter.session import Session, SubscribeGuard, limits_json

if TYPE_CHECKING:
    from web.blotter.service import BlotterService

log = logging.getLogger(__name__)

PATH = "/v1/trade-blotter/stream"
FRAMES_PER_WAKE = 16
CLOSE_TIMEOUT_S = 2.0
_BLOTTER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


class StreamHandler:
    """The aiohttp handler of the stream endpoint, and the registry of open connections."""

    def __init__(self, service: BlotterService) -> None:
        self.service = service
        self._open: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    @property
    def connections(self) -> int:
        return len(self._open)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        blotter_id = request.query.get("blotterId", "default")
        if not _BLOTTER_ID.match(blotter_id):
            raise web.HTTPBadRequest(
                text="blotterId must be 1-128 characters of letters, digits and ._:@-"
            )
        principal = await self.service.authenticate(request)
        limiter = self.service.connection_limiter
        slot = limiter.acquire(principal.subject) if limiter is not None else None
        if limiter is not None and slot is None:  # refused before the upgrade
            metrics.RATE_LIMITED.inc()
            return rate_limited_response("too many concurrent connections for this user", 5.0)
        try:
            return await self._serve(request, blotter_id, principal)
        finally:
            if slot is not None:
                slot.release()

    async def _serve(
        self, request: web.Request, blotter_id: str, principal: Principal
    ) -> web.StreamResponse:
        config = self.service.config
        ws = web.WebSocketResponse(
            heartbeat=config.heartbeat_s or None,
            compress=config.compress,
            max_msg_size=config.max_message_bytes,
            protocols=_bearer_subprotocols(request),
        )
        await ws.prepare(request)
        wake = asyncio.Event()
        session = Session(
            self.service.fanout,
            principal,
            config,
            wake=wake.set,
            subscribe_guard=self.service.subscribe_guard,
        )
        if self.service.subscribe_limiter is not None and self.service.subscribe_guard is None:
            session._guard = _rate_guard(self.service.subscribe_limiter, principal, session)
        self._open.add(ws)
        metrics.WS_CONNECTIONS.inc()
        expiry = None
        if principal.expires_at is not None:  # the token's validity ends the session
            expiry = asyncio.get_running_loop().call_later(
                max(0.0, principal.expires_at - time.time()),
                session.request_close,
                protocol.CLOSE_UNAUTHORIZED,
                "token expired",
            )
        # Only the writer task sends: the welcome is its first frame.
        session.send_control(
            protocol.welcome_frame(blotter_id, self.service.replica.ready, limits_json(config))
        )
        writer = asyncio.create_task(
            self._write(request, ws, session, wake), name=f"blotter-ws-{blotter_id}"
        )
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    session.handle_text(message.data)
                elif message.type is WSMsgType.BINARY:
                    session.handle_binary()
                elif message.type is WSMsgType.ERROR:
                    break
        except ConnectionError:
            pass  # the peer went away
        finally:
            if expiry is not None:
                expiry.cancel()
            writer.cancel()
            session.close()
            self._open.discard(ws)
            metrics.WS_CONNECTIONS.dec()
            if not ws.closed:
                await ws.close()
        return ws

    async def _write(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        session: Session,
        wake: asyncio.Event,
    ) -> None:
        config = self.service.config
        loop = asyncio.get_running_loop()
        last_flush = 0.0
        try:
            while not ws.closed:
                if session.close_code is None and not session.has_work():
                    await wake.wait()
                    wake.clear()
                    delay = last_flush + config.batch_interval_s - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                frames = session.collect(FRAMES_PER_WAKE)
                last_flush = loop.time()
                async with asyncio.timeout(config.send_timeout_s):
                    for frame in frames:
                        if ws.compress and len(frame) < config.compress_min_bytes:
                            # the response's own writer: same transport, with flow control
                            await request.writer.write(uncompressed_text_frame(frame))
                        else:
                            await ws.send_frame(frame, WSMsgType.TEXT)
                if session.close_code == protocol.CLOSE_SLOW_CONNECTION:
                    # The client does not read (its control queue is full): a closing
                    # handshake cannot complete, so drop the TCP connection.
                    log.info("dropping a blotter connection: %s", session.close_reason)
                    _abort(request)
                    return
                if session.close_code is not None:
                    await _close(request, ws, session.close_code, session.close_reason)
                    return
        except TimeoutError:
            log.info("dropping a blotter connection whose socket did not drain")
            _abort(request)
        except (ConnectionError, RuntimeError):
            pass  # the peer went away; the reader side cleans up
        except Exception:
            log.exception("blotter connection writer failed")
            await _close(request, ws, protocol.CLOSE_INTERNAL_ERROR, "internal error")

    async def close_all(self, app: web.Application | None = None) -> None:
        """Close every connection with 1001 (server going away): clients reconnect elsewhere."""
        open_sockets = [ws for ws in list(self._open) if not ws.closed]
        if not open_sockets:
            return
        closing = [
            ws.close(code=protocol.CLOSE_GOING_AWAY, message=b"server shutting down")
            for ws in open_sockets
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*closing, return_exceptions=True)


def uncompressed_text_frame(payload: bytes) -> bytes:
    """A final, unmasked TEXT frame with RSV1 clear (RFC 6455 section 5.2, RFC 7692 section 6):
    a server never masks, and with permessage-deflate in use RSV1 marks the compressed ones."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = struct.pack(">BBH", 0x81, 126, size)
    else:
        header = struct.pack(">BBQ", 0x81, 127, size)
    return header + payload


async def _close(request: web.Request, ws: web.WebSocketResponse, code: int, reason: str) -> None:
    """Close with `code`, or drop the connection if the closing handshake does not complete."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close(code=code, message=reason.encode())
            return
    _abort(request)


def _abort(request: web.Request) -> None:
    """Reset the TCP connection at once. A peer that stopped reading cannot receive a close frame,
    and closing the transport gracefully would wait forever to flush its buffer."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _bearer_subprotocols(request: web.Request) -> tuple[str, ...]:
    """Subprotocols to accept: a browser that sent its token as a subprotocol (`bearer, <token>`
    or `bearer.<token>`, see web.auth_http) fails the connection unless one is echoed back."""
    offered = [
        entry.strip()
        for header in request.headers.getall("Sec-WebSocket-Protocol", [])
        for entry in header.split(",")
    ]
    return tuple(p for p in offered if p == "bearer" or p.startswith("bearer."))


def _rate_guard(limiter: RateLimiter, principal: Principal, session: Session) -> SubscribeGuard:
    """Per-user subscribe rate: RATE_LIMITED errors, then a close when the client keeps on."""
    gate = limiter.gate(principal.subject)

    def guard(_: Principal, message: object) -> None:
        decision = gate.check()
        if decision is Decision.ALLOW:
            return
        metrics.RATE_LIMITED.inc()
        if decision is Decision.CLOSE:
            session.request_close(protocol.CLOSE_RATE_LIMITED, "rate limit exceeded repeatedly")
        raise protocol.ProtocolError(
            protocol.RATE_LIMITED, "too many subscribe requests; slow down"
        )

    return guard
