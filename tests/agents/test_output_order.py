"""A handler's outputs are sent only after the changelog records of its table writes are in the
Kafka client (`tables.common.changelog_handed_over`).

Found by the long reliability run: Faust buffers changelog records and hands them to the client
from a background task, while outputs went to the client at once; after a kill -9 the broker had
TradeApplied at versions 128-131 and the changelog had none of those position states, so the
redelivered trades were applied again at other versions. Here the producer buffer is a recorder:
every output send checks that nothing written to a table is still buffered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import faust

from agents.positions import PositionEngine
from app.config import load_settings
from app.domain.lot_methods import LotMethodSchedule
from app.domain.positions import Position
from app.pricebook import PriceBook
from app.serde import build_serde


class RecordingBuffer:
    """Faust's ProducerBuffer as far as the hand-over sees it: writes wait in `pending` until
    they are handed to the client (`_send_pending`)."""

    def __init__(self) -> None:
        self.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
        self.pending: asyncio.Queue[str] = asyncio.Queue()
        self.message_sent = asyncio.Event()
        self.handed_over: list[str] = []

    def put(self, record: str) -> None:
        self.pending.put_nowait(record)

    def buffered(self) -> list[str]:
        return list(self.pending._queue)  # type: ignore[attr-defined]

    async def _send_pending(self, record: str) -> None:
        self.handed_over.append(record)

    async def flush(self) -> None:
        while not self.pending.empty():
            await self._send_pending(self.pending.get_nowait())


class RecordingTopic:
    def __init__(self, name: str, buffer: RecordingBuffer, sent: list[tuple[str, list[str]]]):
        self.name, self.buffer, self.sent = name, buffer, sent

    async def send(self, **kwargs: Any) -> None:
        self.sent.append((self.name, self.buffer.buffered()))


class RecordingStore:
    """PositionStore whose writes are buffered changelog records."""

    def __init__(self, buffer: RecordingBuffer) -> None:
        self.buffer = buffer
        self.positions: dict[str, Position] = {}

    def get_or_create(self, key: str) -> Position:
        account, _, symbol = key.partition(":")
        return self.positions.setdefault(
            key, Position(account, symbol, LotMethodSchedule("FIFO"))
        )

    def get(self, key: str) -> Position | None:
        return self.positions.get(key)

    def append(self, key: str, event: Any) -> None:
        self.buffer.put(f"history {key} v{event.version}")

    def add_pending(self, key: str, trade_id: str) -> None:
        self.buffer.put(f"pending {key} {trade_id}")

    def save(self, position: Position) -> None:
        self.buffer.put(f"position {position.position_key} v{position.version}")

    def cached(self) -> list[Position]:
        return list(self.positions.values())


class AcceptingIntake:
    topic = "trade-events"

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row

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


def engine_with_recorders() -> tuple[PositionEngine, RecordingBuffer, list]:
    app = faust.App("test-output-order", broker="memory://", store="memory://")
    buffer = RecordingBuffer()
    sent: list[tuple[str, list[str]]] = []
    settings = load_settings({"AUTH_MODE": "disabled", "BUSINESS_DATE": "2026-12-03"})
    engine = PositionEngine(app, settings, build_serde(None), RecordingStore(buffer), PriceBook())
    engine.app = SimpleNamespace(producer=SimpleNamespace(buffer=buffer))  # type: ignore[assignment]
    for attr in ("changes", "trade_applied", "provisional", "corrected", "backdated"):
        setattr(engine, attr, RecordingTopic(attr, buffer, sent))
    engine.output_schemas_ready = True
    return engine, buffer, sent


async def test_trade_outputs_follow_the_changelog_of_the_position_they_describe() -> None:
    engine, buffer, sent = engine_with_recorders()
    today = dt.date(2026, 12, 3)
    await engine.on_trade(SimpleNamespace(), AcceptingIntake(trade_row("T1", "BUY", "10", today)))
    await engine.on_trade(SimpleNamespace(), AcceptingIntake(trade_row("T2", "SELL", "4", today)))
    assert [name for name, _ in sent] == ["trade_applied", "changes"] * 2
    assert all(still_buffered == [] for _, still_buffered in sent), sent
    assert buffer.handed_over == [
        "history ACC-1:XOM v1", "position ACC-1:XOM v1",
        "history ACC-1:XOM v2", "position ACC-1:XOM v2",
    ]


async def test_a_backdated_trade_sends_its_provisional_outputs_after_its_state() -> None:
    engine, buffer, sent = engine_with_recorders()
    today = dt.date(2026, 12, 3)
    await engine.on_trade(SimpleNamespace(), AcceptingIntake(trade_row("T1", "BUY", "10", today)))
    late = trade_row("T0", "BUY", "5", today - dt.timedelta(days=2))
    event = SimpleNamespace(message=SimpleNamespace(value=b"the input record"))
    await engine.on_trade(event, AcceptingIntake(late))
    assert [name for name, _ in sent][2:] == ["provisional", "backdated", "changes"]
    assert all(still_buffered == [] for _, still_buffered in sent), sent
    assert "pending ACC-1:XOM T0" in buffer.handed_over


async def test_a_price_tick_republishes_only_handed_over_state() -> None:
    engine, buffer, sent = engine_with_recorders()
    position = engine.store.get_or_create("ACC-1:XOM")
    engine.store.save(position)  # a write whose changelog record is still buffered
    await engine.publish_row(position)
    assert sent == [("changes", [])]
    assert buffer.handed_over == ["position ACC-1:XOM v0"]
