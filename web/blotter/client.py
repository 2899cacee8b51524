"""A small reference client of the blotter stream: keeps each subscription's view, grants credits.

Used by the tests, the benchmark and demos; also the executable description of what a client must
do: apply `snapshot` rows and `changes` in order, drop a key on `remove`, never let a lower
sequence replace a higher one, and keep granting credits as rows are consumed.

    async with BlotterClient("http://127.0.0.1:6066", blotter_id="desk-1") as client:
        view = await client.subscribe("s1", "Order", {"fieldName": "account", ...})
        await view.wait_snapshot()
        print(view.rows)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

STREAM_PATH = "/v1/trade-blotter/stream"


@dataclass
class View:
    """What the client holds for one subscription."""

    sub_id: str
    object_type: str
    window: int
    auto_credit: bool
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    granted: int = 0  # credits granted so far (subscribe + requests)
    received: int = 0  # rows received (snapshot rows and change entries)
    snapshot_rows: int = 0
    removes: int = 0
    regressions: int = 0  # entries whose sequence was not above the held one (must stay 0)
    errors: list[dict[str, Any]] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    snapshot_done: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def outstanding(self) -> int:
        """Credits granted and not yet used by the server."""
        return self.granted - self.received

    async def wait_snapshot(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.snapshot_done.wait(), timeout)

    def apply(self, entry: dict[str, Any]) -> None:
        key, sequence = entry["key"], entry["sequence"]
        held = self.sequences.get(key)
        if held is not None and sequence <= held and entry.get("op") != "remove":
            self.regressions += 1
            return
        if entry.get("op") == "remove":
            self.removes += 1
            if held is not None and sequence < held:
                self.regressions += 1
                return
            self.rows.pop(key, None)
            self.sequences.pop(key, None)
            return
        self.rows[key] = entry["row"]
        self.sequences[key] = sequence


#: Called for every row entry with (view, entry, monotonic receive time); the benchmark uses it.
EntryHook = Callable[[View, dict[str, Any], float], None]


class BlotterClient:
    """One WebSocket connection with any number of subscriptions."""

    def __init__(
        self,
        base_url: str,
        blotter_id: str = "default",
        *,
        compress: bool = True,
        headers: dict[str, str] | None = None,
        on_entry: EntryHook | None = None,
        heartbeat: float | None = None,
        token: str | None = None,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}{STREAM_PATH}?blotterId={blotter_id}"
        self.compress = compress
        self.headers = dict(headers or {})
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.on_entry = on_entry
        self.heartbeat = heartbeat
        self.views: dict[str, View] = {}
        self.errors: list[dict[str, Any]] = []  # errors not tied to a subscription
        self.welcome: dict[str, Any] | None = None
        self.frames = 0
        self.close_code: int | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pongs: dict[Any, asyncio.Future[float]] = {}
        self._ping_ids = itertools.count(1)
        self._welcomed = asyncio.Event()
        self._error_seen = asyncio.Event()
        self._errors_read = 0

    async def __aenter__(self) -> BlotterClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, http: aiohttp.ClientSession | None = None) -> None:
        self._own_http = http is None
        self._http = http or aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(
            self.url,
            compress=15 if self.compress else 0,
            headers=self.headers,
            heartbeat=self.heartbeat,
            max_msg_size=0,
        )
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._welcomed.wait(), 10)

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._http is not None and self._own_http:
            await self._http.close()

    @property
    def closed(self) -> bool:
        return self._ws is None or self._ws.closed

    # -- requests --------------------------------------------------------------------------
    async def send(self, message: Any) -> None:
        """Send a JSON message as is (tests use it to send malformed ones)."""
        assert self._ws is not None
        text = message if isinstance(message, str) else orjson.dumps(message).decode()
        await self._ws.send_str(text)

    async def subscribe(
        self,
        sub_id: str,
        object_type: str,
        filter: dict[str, Any] | None = None,
        credits: int = 1000,
        *,
        auto_credit: bool = True,
    ) -> View:
        """Subscribe; with `auto_credit` the client tops credits back up to `credits` as rows
        arrive, so the server never waits on it."""
        view = View(sub_id, object_type, window=credits, auto_credit=auto_credit, granted=credits)
        self.views[sub_id] = view
        message: dict[str, Any] = {
            "type": "subscribe",
            "id": sub_id,
            "objectType": object_type,
            "credits": credits,
        }
        if filter is not None:
            message["filter"] = filter
        await self.send(message)
        return view

    async def request(self, sub_id: str, n: int) -> None:
        self.views[sub_id].granted += n
        await self.send({"type": "request", "id": sub_id, "n": n})

    async def unsubscribe(self, sub_id: str) -> None:
        await self.send({"type": "unsubscribe", "id": sub_id})

    async def ping(self, timeout: float = 10.0) -> float:
        """Round trip of a `ping` message, in seconds (proves the connection is alive)."""
        nonce = next(self._ping_ids)
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pongs[nonce] = future
        started = time.monotonic()
        await self.send({"type": "ping", "id": nonce})
        await asyncio.wait_for(future, timeout)
        return time.monotonic() - started

    async def next_error(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next `error` message not yet returned by this method (waits for it)."""
        deadline = time.monotonic() + timeout
        while len(self.errors) <= self._errors_read:
            self._error_seen.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no error message arrived")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._error_seen.wait(), remaining)
        self._errors_read += 1
        return self.errors[self._errors_read - 1]

    # -- receiving -------------------------------------------------------------------------
    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await self._dispatch(orjson.loads(message.data))
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                    break
        finally:
            self.close_code = self._ws.close_code
            for view in self.views.values():
                view.closed.set()

    async def _dispatch(self, message: dict[str, Any]) -> None:
        self.frames += 1
        kind = message.get("type")
        now = time.monotonic()
        view = self.views.get(message.get("id")) if "id" in message else None
        if kind == "welcome":
            self.welcome = message
            self._welcomed.set()
        elif kind == "pong":
            future = self._pongs.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(now)
        elif kind == "subscribed" and view is not None:
            view.subscribed.set()
        elif kind in ("snapshot", "changes") and view is not None:
            entries = message["rows"] if kind == "snapshot" else message["changes"]
            view.received += len(entries)
            if kind == "snapshot":
                view.snapshot_rows += len(entries)
            for entry in entries:
                view.apply(entry)
                if self.on_entry is not None:
                    self.on_entry(view, entry, now)
            await self._top_up(view)
        elif kind == "snapshotEnd" and view is not None:
            view.snapshot_done.set()
        elif kind == "unsubscribed" and view is not None:
            view.closed.set()
        elif kind == "error":
            if view is not None:
                view.errors.append(message)
                if message.get("code") == "SLOW_CONSUMER":
                    view.closed.set()
            self.errors.append(message)
            self._error_seen.set()

    async def _top_up(self, view: View) -> None:
        if view.auto_credit and view.outstanding <= view.window // 2:
            await self.request(view.sub_id, view.window - view.outstanding)
