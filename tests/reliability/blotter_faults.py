"""Blotter clients that misbehave for the whole chaos run, beside the worker faults (item 2f).

- `StalledClient` subscribes to every Order with a handful of credits and grants no more while
  the stream runs: the server must hold its rows back (conflating them per key) without slowing
  anyone else. When its worker goes away (kill -9, SIGTERM, scale-down) it connects to a live
  one and stalls again. At quiet it grants credits and its view must become the expected set.
- `ReconnectingClient` connects to a random live worker, subscribes to every Execution, waits
  for the snapshot, holds the connection for a moment and drops it, in a loop. Every session
  must be free of errors and regressions; at quiet a last session must show the expected set.

The expected sets come from the verifier's reference model (`reference.Expected`), never from
the system under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import aiohttp

from tests.reliability.cluster import Fleet
from tests.reliability.reference import Expected
from web.blotter.client import BlotterClient, View

SESSION_SNAPSHOT_TIMEOUT_S = 20.0
CONVERGE_TIMEOUT_S = 60.0
ALLOWED_ERRORS = {"SLOW_CONSUMER"}  # the server's answer to a client past its pending bound


def expected_sequences(expected: Expected, object_type: str) -> dict[str, int]:
    return {
        object_id: version.sequence
        for (kind, object_id), version in expected.objects.items()
        if kind == object_type
    }


def view_problems(label: str, view: View) -> list[str]:
    """What a client may never see, whatever the faults: a regression, an unexpected error,
    more rows than it granted credits for."""
    problems = []
    if view.regressions:
        problems.append(f"{label}: {view.regressions} regressions")
    unexpected = [e for e in view.errors if e.get("code") not in ALLOWED_ERRORS]
    if unexpected:
        problems.append(f"{label}: errors {unexpected[:3]}")
    if view.received > view.granted:
        problems.append(f"{label}: {view.received} rows for {view.granted} credits")
    return problems


async def converge(view: View, want: dict[str, int], timeout_s: float) -> str | None:
    """None once the view holds exactly `want`; else what differs when time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if view.sequences == want:
            return None
        if view.closed.is_set():
            break
        await asyncio.sleep(0.2)
    missing = sorted(set(want) - set(view.sequences))
    extra = sorted(set(view.sequences) - set(want))
    behind = sorted(k for k in want if k in view.sequences and view.sequences[k] != want[k])
    return (
        f"view differs from the expected {len(want)} rows: missing {len(missing)} "
        f"{missing[:3]}, extra {len(extra)} {extra[:3]}, other sequence {len(behind)} "
        f"{[(k, view.sequences[k], want[k]) for k in behind[:3]]}"
    )


async def snapshot_or_close(view: View, timeout_s: float) -> bool:
    """Wait for the snapshot's end or the connection's; False if neither came in time."""
    waits = [
        asyncio.create_task(view.snapshot_done.wait()),
        asyncio.create_task(view.closed.wait()),
    ]
    done, pending = await asyncio.wait(
        waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return bool(done)


@dataclass
class _Background:
    rng: random.Random
    problems_seen: list[str] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    connect_failures: int = 0

    async def start(self, fleet: Fleet) -> None:
        self.task = asyncio.create_task(self._run(fleet))

    async def stop(self) -> None:
        self.stopping.set()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self, fleet: Fleet) -> None:
        raise NotImplementedError

    async def _connect(self, fleet: Fleet, name: str) -> BlotterClient | None:
        live = fleet.live()
        if not live:
            self.connect_failures += 1
            return None
        client = BlotterClient(self.rng.choice(live).url, name)
        try:
            await asyncio.wait_for(client.connect(), 10)
        except (aiohttp.ClientError, OSError, TimeoutError):  # worker starting or just killed
            self.connect_failures += 1
            await client.close()
            return None
        return client


class StalledClient(_Background):
    """A client with a few credits that never grants more until the run is quiet."""

    object_type = "Order"
    credits = 5

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.client: BlotterClient | None = None
        self.view: View | None = None
        self.connections = 0
        self.held_back = 0  # stalled sessions in which the server really had more to send
        self.rows = 0

    async def _run(self, fleet: Fleet) -> None:
        while not self.stopping.is_set():
            if self.client is None or self.client.closed or self._view_closed():
                await self._end_session()
                self.client = await self._connect(fleet, "chaos-stalled")
                if self.client is None:
                    await asyncio.sleep(0.5)
                    continue
                self.connections += 1
                self.view = await self.client.subscribe(
                    "stalled", self.object_type, credits=self.credits, auto_credit=False
                )
            await asyncio.sleep(0.5)

    def _note_held_back(self, view: View) -> None:
        """Every credit used up: the server had more rows for this view and held them back."""
        if view.received == view.granted:
            self.held_back += 1

    def _view_closed(self) -> bool:
        return self.view is not None and self.view.closed.is_set()

    async def _end_session(self) -> None:
        if self.view is not None:
            self.problems_seen += view_problems(f"stalled session {self.connections}", self.view)
            self._note_held_back(self.view)
        if self.client is not None:
            await self.client.close()
        self.client, self.view = None, None

    async def problems(self, fleet: Fleet, expected: Expected) -> list[str]:
        want = expected_sequences(expected, self.object_type)
        if self.client is not None and not self.client.closed and not self._view_closed():
            assert self.view is not None
            self._note_held_back(self.view)
            await self.client.request("stalled", 1_000_000 - self.credits)
        else:  # its last worker went away as the run ended: a fresh connection, with credits
            await self._end_session()
            self.client = await self._connect(fleet, "chaos-stalled")
            if self.client is None:
                return [*self.problems_seen, "stalled client: no live worker at quiet"]
            self.connections += 1
            self.view = await self.client.subscribe("stalled", self.object_type)
        differs = await converge(self.view, want, CONVERGE_TIMEOUT_S)
        problems = list(self.problems_seen)
        problems += view_problems("stalled client at quiet", self.view)
        if differs:
            problems.append(f"stalled client: {differs}")
        if self.held_back == 0:
            problems.append("stalled client: the server never had to hold rows back")
        self.rows = len(self.view.sequences)
        await self.client.close()
        return problems

    def summary(self) -> str:
        return (
            f"stalled client: {self.connections} connections, held back in {self.held_back}, "
            f"{self.rows} {self.object_type} rows at quiet"
        )


class ReconnectingClient(_Background):
    """A client that connects, takes the snapshot and drops the connection, in a loop."""

    object_type = "Execution"
    min_sessions = 5

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.sessions = 0
        self.snapshot_timeouts = 0
        self.rows = 0

    async def _run(self, fleet: Fleet) -> None:
        while not self.stopping.is_set():
            client = await self._connect(fleet, "chaos-reconnecting")
            if client is None:
                await asyncio.sleep(0.5)
                continue
            try:
                view = await client.subscribe("loop", self.object_type, credits=500)
                if not await snapshot_or_close(view, SESSION_SNAPSHOT_TIMEOUT_S):
                    self.snapshot_timeouts += 1
                    continue
                if not view.snapshot_done.is_set():
                    continue  # its worker went away mid-snapshot: not the client's fault
                await asyncio.sleep(self.rng.uniform(0.2, 2.0))
                self.sessions += 1
                self.problems_seen += view_problems(f"reconnect session {self.sessions}", view)
            finally:
                await client.close()

    async def problems(self, fleet: Fleet, expected: Expected) -> list[str]:
        problems = list(self.problems_seen)
        if self.sessions < self.min_sessions:
            problems.append(f"reconnecting client: only {self.sessions} sessions")
        if self.snapshot_timeouts:
            problems.append(
                f"reconnecting client: {self.snapshot_timeouts} snapshots not done in "
                f"{SESSION_SNAPSHOT_TIMEOUT_S:.0f} s on a live worker"
            )
        client = await self._connect(fleet, "chaos-reconnecting")
        if client is None:
            return [*problems, "reconnecting client: no live worker at quiet"]
        try:
            view = await client.subscribe("final", self.object_type, credits=10_000)
            differs = await converge(
                view, expected_sequences(expected, self.object_type), CONVERGE_TIMEOUT_S
            )
            problems += view_problems("reconnecting client at quiet", view)
            if differs:
                problems.append(f"reconnecting client: {differs}")
            self.rows = len(view.sequences)
        finally:
            await client.close()
        return problems

    def summary(self) -> str:
        return (
            f"reconnecting client: {self.sessions} sessions, {self.connect_failures} refused "
            f"connects, {self.rows} {self.object_type} rows at quiet"
        )


def blotter_clients(rng: random.Random) -> list[StalledClient | ReconnectingClient]:
    return [
        StalledClient(random.Random(rng.random())),
        ReconnectingClient(random.Random(rng.random())),
    ]
