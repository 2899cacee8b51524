"""A handler's outputs reach the Kafka client only after the changelog records of its table
writes (ADR 0007): the position engine queues them in its output batches and produces them when
the batch ends, after handing every table's changelog batches to the client (ADR 0015).

Found by the long reliability run: Faust buffers changelog records and hands them to the client
from a background task, while outputs went to the client at once; after a kill -9 the broker had
TradeApplied at versions 128-131 and the changelog had none of those position states, so the
redelivered trades were applied again at other versions. Here the position engine runs with
Faust's own producer buffer. Table writes queue their changelog records in the table's batches
(ADR 0014), which every hand-over of the buffer sends first; the test reads the order in which
changelog batches and output batches reach the client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from faust.streams import _current_event
from faust.transport.producer import ProducerBuffer

from agents import positions as positions_agents
from agents.objects import H_SEQUENCE
from agents.positions import PRICE_SEQUENCE_BITS, PositionEngine
from app import faust_fixes, metrics
from app.config import load_settings
from app.domain.positions import apply_trade
from app.pricebook import PriceBook
from app.serde import build_serde
from tables.positions import PositionStore


class Recorder:
    """The Kafka client (its batch API) behind Faust's producer buffer: what reaches it, in
    order, named by what each record is."""

    def __init__(self, app: faust.App) -> None:
        self.buffer = ProducerBuffer()
        self.buffer.app = app
        self.handed_over: list[str] = []
        self.outputs: dict[str, str] = {}  # output topic -> engine attribute
        self.known_topics: set[str] = set()
        self._metadata = SimpleNamespace(partitions_for_topic=self.partitions_for_topic)
        self.client = SimpleNamespace(_wait_on_metadata=self.wait_on_metadata)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(4)) if topic in self.known_topics else None

    async def wait_on_metadata(self, topic: str) -> set[int]:
        self.known_topics.add(topic)
        return set(range(4))

    def create_batch(self) -> list[tuple[bytes, bytes]]:
        return BatchOfRecords()

    async def send_batch(self, batch: BatchOfRecords, topic: str, *, partition: int) -> None:
        for key, value, headers in batch:
            output = self.outputs.get(topic)
            if output == "changes":  # a Position row, named by the version it shows
                sequence = int(dict(headers)[H_SEQUENCE])
                self.handed_over.append(f"row v{sequence >> PRICE_SEQUENCE_BITS}")
            elif output is not None:
                self.handed_over.append(output)
            else:
                self.handed_over.append(changelog_label(key, value))


def changelog_label(key: bytes, value: bytes) -> str:
    """What a `positions` changelog record is, as the assertions below name it."""
    if b"\x00" in key:
        position_key, _, version = key.partition(b"\x00")
        return f"history {position_key.decode()} v{int.from_bytes(version, 'big')}"
    if key.endswith(b"\x01"):
        return f"pending {key[:-1].decode()} {orjson.loads(value)}"
    return f"position {key.decode()} v{orjson.loads(value)['version']}"


class BatchOfRecords(list):
    """The part of aiokafka's batch builder the changelog batches use."""

    def append(self, *, key: bytes, value: bytes, timestamp: Any, headers: Any) -> bool:
        if not isinstance(headers, list):  # as aiokafka's builder, which raises TypeError
            raise TypeError(f"headers must be a list, got {type(headers).__name__}")
        super().append((key, value, headers))
        return True


class Event:
    """A delivered input record, as far as the handlers and table writes read it."""

    def __init__(self, value: bytes = b"the input record") -> None:
        self.message = SimpleNamespace(topic="trade-events", partition=0, value=value)


async def deliver(handler: Any, row: dict[str, Any], event: Event | None = None) -> None:
    """Run a handler the way the agent does: with the event current (table writes go to its
    partition)."""
    event = event or Event()
    token = _current_event.set(weakref.ref(event))
    try:
        await handler(event, AcceptingIntake(row))
    finally:
        _current_event.reset(token)


class AcceptingIntake:
    topic = "trade-events"

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.dead: list[Any] = []
        self.counted_applied = metrics.EVENTS_APPLIED.labels(topic=self.topic)
        self.counted_stale = metrics.EVENTS_STALE.labels(topic=self.topic)

    async def dead_letter(self, event: Any, error: Exception) -> None:
        self.dead.append(error)

    async def accept(self, event: Any) -> tuple[bytes, dict[str, Any]]:
        return f"{self.row['account']}:{self.row['symbol']}".encode(), self.row


def trade_row(trade_id: str, side: str, quantity: str, day: dt.date) -> dict[str, Any]:
    return {
        "tradeId": trade_id,
        "account": "ACC-1",
        "symbol": "XOM",
        "side": side,
        "quantity": Decimal(quantity),
        "price": Decimal("101.25"),
        "tradeTime": dt.datetime.combine(day, dt.time(14, 30), tzinfo=dt.UTC),
        "effectiveDate": day,
        "correlationId": f"corr-{trade_id}",
        "causationId": None,
        "eventId": f"ev-{trade_id}",
        "sequence": 1,
    }


@pytest.fixture
def recorded() -> tuple[PositionEngine, Recorder]:
    faust_fixes.install()
    app = faust.App("test-output-order", broker="memory://", store="memory://")
    recorder = Recorder(app)
    app.producer = SimpleNamespace(  # type: ignore[assignment]
        buffer=recorder.buffer,
        _producer=recorder,
        key_partition=lambda topic, key: SimpleNamespace(partition=0),
    )
    settings = load_settings({"AUTH_MODE": "disabled", "BUSINESS_DATE": "2026-12-03"})
    app.consumer = SimpleNamespace(topic_partitions=lambda topic: 4)  # type: ignore[assignment]
    store = PositionStore(app, 4, "FIFO")
    engine = PositionEngine(app, settings, build_serde(None), store, PriceBook())
    recorder.outputs = {
        getattr(engine, attr).topic: attr
        for attr in ("changes", "trade_applied", "provisional", "corrected", "backdated")
    }
    engine.output_schemas_ready = True
    return engine, recorder


async def test_trade_outputs_follow_the_changelog_of_the_position_they_describe(
    recorded,
) -> None:
    engine, buffer = recorded
    today = dt.date(2026, 12, 3)
    await deliver(engine.on_trade, trade_row("T1", "BUY", "10", today))
    await deliver(engine.on_trade, trade_row("T2", "SELL", "4", today))
    assert buffer.handed_over == [], "nothing reaches the client before the batch ends"
    await engine.publish_due_rows()  # the batch ends
    assert buffer.handed_over == [
        "history ACC-1:XOM v1", "position ACC-1:XOM v1", "history ACC-1:XOM v2",
        "trade_applied", "trade_applied", "row v2",
    ], "the batch's state (the first trade's snapshot too), then its outputs; one row per batch"


async def test_a_backdated_trade_sends_its_provisional_outputs_after_its_state(recorded) -> None:
    engine, buffer = recorded
    today = dt.date(2026, 12, 3)
    await deliver(engine.on_trade, trade_row("T1", "BUY", "10", today))
    late = trade_row("T0", "BUY", "5", today - dt.timedelta(days=2))
    event = Event()
    await deliver(engine.on_trade, late, event)
    await engine.publish_due_rows()  # the batch ends
    assert buffer.handed_over == [
        "history ACC-1:XOM v1", "position ACC-1:XOM v1",
        "pending ACC-1:XOM ['T0']", "history ACC-1:XOM v2",
        "trade_applied", "provisional", "backdated", "row v2",
    ], "pending before the history event: a surviving history event implies the pending record"


async def test_a_price_tick_republishes_behind_the_state_it_shows(recorded) -> None:
    engine, buffer = recorded
    today = dt.date(2026, 12, 3)
    await deliver(engine.on_trade, trade_row("T1", "BUY", "10", today))
    await engine.publish_due_rows()  # the batch ends
    del buffer.handed_over[:]
    await deliver(engine.on_trade, trade_row("T2", "BUY", "5", today))  # a batch in progress
    engine.on_price("XOM", Decimal("102"))  # from the price follower, outside any batch
    engine.on_price("XOM", Decimal("103"))
    assert engine.price_rows is not None
    await asyncio.wait_for(engine.price_rows, 5)  # no batch has to end for the rows to go
    assert buffer.handed_over == [
        "history ACC-1:XOM v2", "trade_applied", "row v2",
    ], "one row for both ticks, behind the state it shows"
    await engine.publish_due_rows()  # the batch ends: its row went out already
    assert buffer.handed_over == ["history ACC-1:XOM v2", "trade_applied", "row v2"]


async def test_a_tick_on_a_symbol_without_open_lots_here_sends_nothing(recorded) -> None:
    engine, buffer = recorded
    await deliver(engine.on_trade, trade_row("T1", "BUY", "10", dt.date(2026, 12, 3)))
    await engine.publish_due_rows()
    del buffer.handed_over[:]
    engine.on_price("IBM", Decimal("150"))
    assert engine.price_rows is None and buffer.handed_over == []


async def test_a_redelivered_pending_trade_sends_its_coldpath_copy_again(recorded) -> None:
    """After a crash that kept the state of a provisional trade but lost its copy to the
    coldpath, the redelivery is a duplicate; without a second copy the position would stay
    PROVISIONAL (ADR 0010)."""
    engine, buffer = recorded
    today = dt.date(2026, 12, 3)
    await deliver(engine.on_trade, trade_row("T1", "BUY", "10", today))
    late = trade_row("T0", "BUY", "5", today - dt.timedelta(days=2))
    event = Event()
    await deliver(engine.on_trade, late, event)
    await engine.publish_due_rows()  # the batch ends
    del buffer.handed_over[:]
    await deliver(engine.on_trade, late, event)
    await engine.publish_due_rows()  # the batch ends
    assert buffer.handed_over == ["backdated", "row v2"]
    assert engine.store.get("ACC-1:XOM").version == 2, "the redelivery changes nothing"


async def test_a_redelivered_trade_no_longer_pending_only_republishes_its_row(recorded) -> None:
    engine, buffer = recorded
    today = dt.date(2026, 12, 3)
    row = trade_row("T1", "BUY", "10", today)
    await deliver(engine.on_trade, row)
    await engine.publish_due_rows()  # the batch ends
    del buffer.handed_over[:]
    await deliver(engine.on_trade, row)
    await engine.publish_due_rows()  # the batch ends
    assert buffer.handed_over == ["row v1"]


async def test_a_replay_writes_the_rebuilt_position_before_it_clears_pending(recorded) -> None:
    """A crash keeps a prefix of the position's writes: had the pending record been cleared
    first, a crash before the rebuilt state would leave the position PROVISIONAL with nothing
    left to replay (the redelivered copy would be counted stale; ADR 0010)."""
    engine, buffer = recorded
    today = dt.date(2026, 12, 3)
    await deliver(engine.on_trade, trade_row("T1", "BUY", "10", today))
    late = trade_row("T0", "BUY", "5", today - dt.timedelta(days=2))
    event = Event()
    await deliver(engine.on_trade, late, event)
    await deliver(engine.on_backdated, late, event)
    await engine.publish_due_rows()  # the batch ends
    assert buffer.handed_over == [
        "history ACC-1:XOM v1", "position ACC-1:XOM v1",
        "pending ACC-1:XOM ['T0']", "history ACC-1:XOM v2",
        "history ACC-1:XOM v3", "position ACC-1:XOM v3", "pending ACC-1:XOM []",
        "trade_applied", "provisional", "backdated", "corrected", "row v3",
    ]
    assert engine.store.get("ACC-1:XOM").status == "RECONCILED"


async def test_a_trade_that_fails_half_applied_leaves_the_stored_state_in_the_row(
    recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row goes out at the end of the batch; a later trade of the batch that fails after
    changing the cached position must not leak into it."""
    engine, buffer = recorded
    today = dt.date(2026, 12, 3)
    await deliver(engine.on_trade, trade_row("T1", "BUY", "10", today))

    def apply_then_fail(position: Any, trade: Any) -> None:
        apply_trade(position, trade)
        raise ArithmeticError("failed after changing the position")

    monkeypatch.setattr(positions_agents, "apply_trade", apply_then_fail)
    intake = AcceptingIntake(trade_row("T2", "SELL", "4", today))
    token = _current_event.set(weakref.ref(Event()))
    try:
        await engine.on_trade(Event(), intake)
    finally:
        _current_event.reset(token)
    await engine.publish_due_rows()
    assert len(intake.dead) == 1
    assert buffer.handed_over == [
        "history ACC-1:XOM v1", "position ACC-1:XOM v1", "trade_applied", "row v1",
    ]
    assert engine.store.get("ACC-1:XOM").quantity == Decimal("10")
