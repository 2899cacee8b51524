"""The WebSocket endpoint in-process (no broker): rows are applied to the replica directly.

Covers what needs a real socket: a client that stops reading must not delay the others and is
disconnected, held snapshots, compression negotiation, shutdown close codes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
from aiohttp import web

from app.serde import build_serde
from tests.conftest import await_condition
from tests.unit.test_blotter_harness import order_row
from web.blotter.client import BlotterClient
from web.blotter.config import BlotterConfig
from web.blotter.principal import Principal, allow_all
from web.blotter.service import BlotterService


@dataclass
class _WebServer:
    web_app: web.Application


@pytest.fixture
async def served() -> AsyncIterator[tuple[BlotterService, str]]:
    services: list[tuple[BlotterService, web.AppRunner]] = []

    async def start(config: BlotterConfig, ready: bool = True) -> tuple[BlotterService, str]:
        service = BlotterService("127.0.0.1:1", "changes", build_serde(None), config)
        service.authenticate = allow_all  # no auth middleware in these tests
        if ready:
            service.replica.mark_ready()
        app = web.Application()
        service.install(_WebServer(app))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        services.append((service, runner))
        return service, f"http://127.0.0.1:{port}"

    yield start  # type: ignore[misc]
    for _, runner in services:
        await runner.cleanup()


def big_order(key: str, sequence: int) -> dict:
    row = order_row(key, sequence)
    row["symbol"] = "X" * 4000  # large rows fill socket buffers quickly
    return row


async def raw_subscriber(url: str, deflate: bool = False) -> socket.socket:
    """A client that completes the handshake, subscribes, and then never reads again."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /v1/trade-blotter/stream?blotterId=stalled HTTP/1.1\r\nHost: {host}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        + ("Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else "")
        + "\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += await loop.sock_recv(sock, 1)
    assert response.startswith(b"HTTP/1.1 101")
    assert (b"permessage-deflate" in response) is deflate
    payload = orjson.dumps(
        {"type": "subscribe", "id": "s", "objectType": "Order", "credits": 1_000_000}
    )
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    header = bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(payload))
    await loop.sock_sendall(sock, header + mask + masked)
    return sock


@pytest.mark.parametrize(
    "deflate, compress_min_bytes",
    [(False, 1024), (True, 64 * 1024)],
    ids=["plain", "deflate-with-frames-sent-uncompressed"],
)
async def test_a_client_that_stops_reading_never_delays_the_others(
    served, deflate, compress_min_bytes
) -> None:
    service, url = await served(
        BlotterConfig(
            send_timeout_s=0.5,
            max_pending=100_000,
            max_batch_rows=1,  # one ~4 KiB row per frame: under compress_min_bytes
            compress_min_bytes=compress_min_bytes,
        )
    )
    stalled = await raw_subscriber(url, deflate)
    try:
        async with BlotterClient(url, "fast") as client:
            view = await client.subscribe("s", "Order", credits=100_000)
            await view.wait_snapshot()
            await await_condition(lambda: service.stream.connections == 2, 5, "both connected")
            delays = []
            for batch in range(20):  # ~10 MB for the stalled socket, far beyond its buffers
                for i in range(125):
                    service.replica.apply("Order", f"K{batch}-{i}", 1, big_order(f"K{i}", 1))
                started = time.monotonic()
                await await_condition(
                    lambda n=batch: f"K{n}-124" in view.rows, 5, "the fast client's rows"
                )
                delays.append(time.monotonic() - started)
            assert len(view.rows) == 2500
            assert max(delays) < 1.0, delays
            # the stalled connection is dropped once its socket stays full past the timeout
            await await_condition(
                lambda: service.stream.connections == 1, 10, "the stalled client to be dropped"
            )
            assert await client.ping() < 1.0
    finally:
        stalled.close()


async def test_snapshot_is_held_until_the_replica_is_ready(served) -> None:
    service, url = await served(BlotterConfig(), ready=False)
    service.replica.apply("Order", "K1", 1, order_row("K1", 1))
    async with BlotterClient(url) as client:
        assert client.welcome["ready"] is False
        view = await client.subscribe("s", "Order")
        await asyncio.wait_for(view.subscribed.wait(), 5)
        service.replica.apply("Order", "K2", 1, order_row("K2", 1))
        await client.ping()
        assert not view.snapshot_done.is_set()
        service.replica.mark_ready()
        await view.wait_snapshot(5)
        assert set(view.rows) == {"K1", "K2"}


async def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """(first header byte, payload) of the next server frame (servers never mask)."""
    loop = asyncio.get_running_loop()

    async def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await loop.sock_recv(sock, n - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data

    first, second = await exactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack(">H", await exactly(2))
    elif size == 127:
        (size,) = struct.unpack(">Q", await exactly(8))
    return first, await exactly(size)


async def test_with_deflate_only_large_frames_are_compressed(served) -> None:
    """A one-row frame is not worth a deflate pass per connection (ADR 0012): frames under
    `compress_min_bytes` go out with RSV1 clear, larger ones compressed, on one connection."""
    service, url = await served(BlotterConfig(compress_min_bytes=1024, max_batch_rows=1))
    sock = await raw_subscriber(url, deflate=True)
    inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # one context: the server keeps its window
    try:
        messages = []
        service.replica.apply("Order", "small", 1, order_row("small", 1))
        service.replica.apply("Order", "large", 1, big_order("large", 1))
        while not messages or messages[-1][1]["type"] != "snapshotEnd":
            first, payload = await asyncio.wait_for(read_frame(sock), 5)
            compressed = bool(first & 0x40)
            if compressed:
                payload = inflate.decompress(payload + b"\x00\x00\xff\xff")
            messages.append((compressed, orjson.loads(payload)))
        rows = {
            row["key"]: (compressed, row["row"]["symbol"])
            for compressed, message in messages
            if message["type"] == "snapshot"
            for row in message["rows"]
        }
        assert rows == {"small": (False, "AAPL"), "large": (True, "X" * 4000)}
        assert not any(compressed for compressed, m in messages if m["type"] != "snapshot")
    finally:
        sock.close()


@pytest.mark.parametrize("enabled", [True, False])
async def test_permessage_deflate_follows_configuration(served, enabled) -> None:
    _, url = await served(BlotterConfig(compress=enabled))
    async with BlotterClient(url, compress=True) as client:
        assert bool(client._ws.compress) is enabled
        assert await client.ping() < 1.0


async def test_shutdown_closes_connections_with_going_away(served) -> None:
    service, url = await served(BlotterConfig())
    async with BlotterClient(url) as client:
        await client.subscribe("s", "Order")
        await service.stream.close_all()
        await await_condition(lambda: client.closed, 5, "the close")
        assert client.close_code == 1001


async def test_entitlements_and_token_expiry_of_the_principal(served) -> None:
    service, url = await served(BlotterConfig())
    service.replica.apply("Order", "A1", 1, order_row("A1", 1, account="A"))
    service.replica.apply("Order", "B1", 1, order_row("B1", 1, account="B"))

    async def only_account_a(request: web.Request) -> Principal:
        return Principal("trader-a", frozenset({"A"}), expires_at=time.time() + 1.0)

    service.authenticate = only_account_a
    async with BlotterClient(url) as client:
        view = await client.subscribe("s", "Order")  # no filter: still only account A
        await view.wait_snapshot(5)
        assert set(view.rows) == {"A1"}
        await await_condition(lambda: client.closed, 5, "the close at token expiry")
        assert client.close_code == 1008
