"""Where a position changes: the trade hotpath, the backdated-trade coldpath, contract rules and
market prices. Thin adapters around app.domain.positions / app.domain.replay.

Single writer per position: `trade-events`, `backdated-trades` and `contract-events` are all
keyed by positionKey and co-partitioned (same partition count, murmur2 placement; the intake
re-keys anything else), so every agent touching position P runs on the worker that owns P's
partition, on that worker's one event loop. Each agent reads the position, computes, and writes
it back without an `await` in between, so a coldpath replay and a hotpath trade can never
interleave on one position: a replay always covers every trade applied before it, and a trade
applied after it sees the replayed state. See docs/adr/0002-positions-and-coldpath.md.

The agents take their input in batches. Every output is queued in its topic's `OutputBatches`
and produced when the batch ends, after the changelog records of the writes it describes
(docs/adr/0015-position-outputs-in-batches.md). A position's row on the change feed goes out
once per batch, with its latest state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import faust
from faust.types import EventT

from agents.delivery import hand_over_producer_buffer, process_in_batches
from agents.intake import Intake
from agents.objects import H_OBJECT_TYPE, H_SEQUENCE, change_key
from app import metrics
from app.config import Settings
from app.domain import position_events as outputs
from app.domain.lot_methods import LOT_METHODS
from app.domain.objects import next_version
from app.domain.positions import PROVISIONAL, RECONCILED, Position, apply_trade, classify
from app.domain.replay import (
    CORRECTION,
    PROVISIONAL_TRADE_APPLIED,
    TRADE_APPLIED,
    HistoryEvent,
    correction,
    history_trades,
    replay,
)
from app.domain.trades import InvalidTrade, TradeInput
from app.errors import PoisonMessage, ValidationError
from app.output_batches import OutputBatches
from app.pricebook import PriceBook
from app.producer import CANONICAL_TOPICS
from app.retry import retry_transient
from app.serde import AvroSerde
from tables.common import bytes_table
from tables.positions import PositionStore

log = logging.getLogger(__name__)

H_PROVISIONAL_VERSION = "backdated.provisional.version"
PRICE_SEQUENCE_BITS = 24
PRICE_SEQUENCE_MASK = (1 << PRICE_SEQUENCE_BITS) - 1


def now_ms() -> int:
    return int(time.time() * 1000)


def validate_trade(row: Mapping[str, Any], business_date: date, max_future_days: int) -> None:
    try:
        trade = TradeInput.from_avro(row)
    except InvalidTrade as exc:
        raise ValidationError(str(exc)) from None
    latest = business_date + timedelta(days=max_future_days)
    if trade.effective_date > latest:
        raise ValidationError(
            f"effectiveDate {trade.effective_date} is more than {max_future_days} days after "
            f"the business date {business_date}"
        )
    if not isinstance(row.get("sequence"), int):
        raise ValidationError("sequence is missing")


def validate_contract_rule(row: Mapping[str, Any]) -> None:
    key = row.get("positionKey")
    if not isinstance(key, str) or ":" not in key or key.startswith(":") or key.endswith(":"):
        raise ValidationError("positionKey must be account:symbol")
    if not key.isprintable():  # the store's keys rely on it (tables/positions.py)
        raise ValidationError("positionKey contains control characters")
    if row.get("lotMethod") not in LOT_METHODS:
        raise ValidationError(f"lotMethod has an unknown value {row.get('lotMethod')!r}")
    if not isinstance(row.get("effectiveFrom"), date):
        raise ValidationError("effectiveFrom is missing")


def validate_price(row: Mapping[str, Any]) -> None:
    symbol = row.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValidationError("symbol is missing or empty")
    price = row.get("price")
    if price is None or not price.is_finite() or price <= 0:
        raise ValidationError(f"price must be > 0, got {price}")


@dataclass
class PositionEngine:
    """Everything the position agents share on one worker."""

    app: faust.App
    settings: Settings
    serde: AvroSerde
    store: PositionStore
    prices: PriceBook
    provisional_since: dict[str, float] = field(default_factory=dict)
    coldpath_pending: int = 0
    output_schemas_ready: bool = False
    # Positions changed in the batches running now, by key: each gets one Position row when
    # its batch ends (`publish_due_rows`), however many trades of the batch it took.
    rows_due: dict[str, Position] = field(default_factory=dict)
    # Rows republished at a new price, outside any batch (`on_price`).
    price_rows: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        topics = self.settings.topics
        self.trade_applied = OutputBatches(self.app, topics.trade_applied)
        self.provisional = OutputBatches(self.app, topics.provisional)
        self.backdated = OutputBatches(self.app, topics.backdated)
        self.corrected = OutputBatches(self.app, topics.corrected)
        self.changes = OutputBatches(self.app, topics.changes)
        self.outputs = (
            self.trade_applied, self.provisional, self.backdated, self.corrected, self.changes
        )

    def encode(self, record: dict[str, Any], schema: str, topic_attr: str) -> bytes:
        return self.serde.encode(record, schema, _output_subject(topic_attr))

    async def ensure_output_schemas(self, topic: str) -> None:
        """Resolve every output subject before a handler changes state: once a position is
        saved, its outputs must be encodable without asking the registry, or a registry outage
        would fail the event after its commit point (and dead-letter an applied trade)."""
        if not self.output_schemas_ready:
            await retry_transient(
                lambda: self.serde.resolve_subjects(OUTPUT_SUBJECTS), topic
            )
            self.output_schemas_ready = True

    def publish_row(self, position: Position) -> None:
        """The Position row on the change feed. Its feed sequence combines the position's
        version with its symbol's price sequence, so a row republished because the price moved
        (same version) still supersedes the previous one, and any new version supersedes both."""
        symbol = position.symbol
        row = outputs.position_row(position, self.prices.price(symbol), now_ms())
        sequence = (position.version << PRICE_SEQUENCE_BITS) | (
            self.prices.sequence(symbol) & PRICE_SEQUENCE_MASK
        )
        self.changes.add(
            change_key("Position", position.position_key),
            self.serde.encode(row, "Position", POSITION_ROW_SUBJECT),
            [(H_OBJECT_TYPE, b"Position"), (H_SEQUENCE, str(sequence).encode())],
        )

    def row_changed(self, position: Position) -> None:
        """Its row goes out when the batch ends: a row is the position's latest state, and the
        blotter keeps only the latest row of a position anyway."""
        self.rows_due[position.position_key] = position

    async def publish_due_rows(self) -> None:
        """When a batch ends: one row per position changed since the last call, then the
        changelog records of the state (and anything else in Faust's producer buffer), then
        the outputs, each topic's as one Kafka batch per partition (ADR 0007, ADR 0015). A row
        that cannot be built is logged and counted, never blocks the batch."""
        due, self.rows_due = self.rows_due, {}
        for position in due.values():
            try:
                self.publish_row(position)
            except Exception:
                metrics.AGENT_ERRORS.labels(agent="position-rows").inc()
                log.exception("could not publish the row of %s", position.position_key)
        await hand_over_producer_buffer(self.app)
        for batches in self.outputs:
            await batches.send()

    def on_price(self, symbol: str, price: object) -> None:
        """Republish the rows of this worker's positions in `symbol` (unrealized P&L and
        exposure move with the price): they are due at once, and go out from a task of their
        own unless a batch ending first takes them. One task serves every tick that arrives
        before it runs."""
        for position in self.store.cached():
            if position.symbol == symbol and position.lot_count:
                self.row_changed(position)
        if self.rows_due and (self.price_rows is None or self.price_rows.done()):
            self.price_rows = asyncio.get_running_loop().create_task(self._publish_price_rows())

    async def _publish_price_rows(self) -> None:
        try:
            await retry_transient(self.publish_due_rows, "position-rows")
        except Exception:
            metrics.AGENT_ERRORS.labels(agent="position-rows").inc()
            log.exception("could not publish the rows due at a new price")

    def update_provisional_gauges(self) -> None:
        metrics.POSITIONS_PROVISIONAL.set(len(self.provisional_since))
        oldest = min(self.provisional_since.values(), default=None)
        metrics.POSITIONS_PROVISIONAL_OLDEST_AGE.set(
            0 if oldest is None else time.time() - oldest
        )
        metrics.COLDPATH_QUEUE_DEPTH.set(max(self.coldpath_pending, 0))

    # -- hotpath --------------------------------------------------------------------------
    async def on_trade(self, event: EventT, intake: Intake) -> None:
        await self.ensure_output_schemas(intake.topic)
        accepted = await intake.accept(event)
        if accepted is None:
            return
        key, row = accepted
        trade = TradeInput.from_avro(row)
        position_key = key.decode()
        position = self.store.get_or_create(position_key)
        if position.is_applied(trade.trade_id):
            metrics.TRADES_DUPLICATE.inc()
            intake.counted_stale.inc()
            self.resend_after_redelivery(event, key, position, trade.trade_id)
            return
        classification = classify(position, trade, self.settings.business_date)
        last_trade_id = position.last_key[2] if position.last_key else None
        try:
            result = apply_trade(position, trade)
        except (ArithmeticError, ValueError) as exc:
            self.store.forget(position_key)  # the cached object may be half-applied
            if self.rows_due.pop(position_key, None) is not None:
                stored = self.store.get(position_key)  # earlier trades of the batch stand
                if stored is not None:
                    self.row_changed(stored)
            await intake.dead_letter(event, _ApplyFailed(f"{type(exc).__name__}: {exc}"))
            return
        provisional = result.backdated
        stamp = now_ms()
        self.store.record_trade(
            position,
            HistoryEvent(
                result.version,
                PROVISIONAL_TRADE_APPLIED if provisional else TRADE_APPLIED,
                trade,
                trade.correlation_id,
                trade.event_id,
                stamp,
            ),
            pending=provisional,
        )
        intake.counted_applied.inc()
        metrics.TRADES_CLASSIFIED.labels(classification=classification).inc()
        record = outputs.trade_applied(
            position,
            trade,
            result,
            classification,
            stamp,
            provisional=provisional,
            last_applied_trade_id=last_trade_id,
        )
        if provisional:
            self.provisional.add(
                key, self.encode(record, "ProvisionalTradeApplied", "provisional"), []
            )
            self.backdated.add(
                key,
                event.message.value,
                [(H_PROVISIONAL_VERSION, str(result.version).encode())],
            )
            self.provisional_since.setdefault(position_key, time.time())
            self.coldpath_pending += 1
            self.update_provisional_gauges()
        else:
            self.trade_applied.add(key, self.encode(record, "TradeApplied", "trade_applied"), [])
        self.row_changed(position)

    def resend_after_redelivery(
        self, event: EventT, key: bytes, position: Position, trade_id: str
    ) -> None:
        """A trade delivered again after a crash may have had its state written but not its
        outputs: the offset is committed only after the outputs were acknowledged, so a
        redelivery is exactly when they may be missing. The coldpath copy of a trade still
        pending is sent again (without it the position would stay PROVISIONAL; the coldpath
        counts a second copy as stale), and the row shows the position as it is."""
        if trade_id in self.store.pending_trades(position.position_key):
            metrics.COLDPATH_RESENT.inc()
            self.backdated.add(key, event.message.value, [])
        self.row_changed(position)

    # -- coldpath -------------------------------------------------------------------------
    async def on_backdated(self, event: EventT, intake: Intake) -> None:
        await self.ensure_output_schemas(intake.topic)
        accepted = await intake.accept(event)
        self.coldpath_pending -= 1
        if accepted is None:
            self.update_provisional_gauges()
            return
        key, row = accepted
        trade = TradeInput.from_avro(row)
        position_key = key.decode()
        position = self.store.get(position_key)
        if position is None or not position.is_applied(trade.trade_id):
            log.error("backdated trade %s is not applied to %s", trade.trade_id, position_key)
            metrics.AGENT_ERRORS.labels(agent="coldpath").inc()
            return
        if trade.trade_id not in self.store.pending_trades(position_key):
            intake.counted_stale.inc()  # corrected before a crash
            return
        started = time.perf_counter()
        events = list(self.store.events(position_key, position.version))
        price = self.prices.price(position.symbol)
        still_pending = [t for t in self.store.pending_trades(position_key) if t != trade.trade_id]
        rebuilt = replay(
            position_key,
            history_trades(events),
            position.schedule,
            version=position.version + 1,
            status=PROVISIONAL if still_pending else RECONCILED,
        )
        fix = correction(position, rebuilt, price)
        stamp = now_ms()
        self.store.record_correction(
            rebuilt,
            HistoryEvent(
                rebuilt.version,
                CORRECTION,
                trade,
                trade.correlation_id,
                trade.event_id,
                stamp,
                details=fix.to_dict(),
            ),
            still_pending,
        )
        metrics.COLDPATH_REPLAY_SECONDS.observe(time.perf_counter() - started)
        intake.counted_applied.inc()
        if not still_pending:
            self.provisional_since.pop(position_key, None)
        self.update_provisional_gauges()
        record = outputs.position_corrected(
            rebuilt, fix, trade.trade_id, trade.correlation_id, len(events), stamp
        )
        self.corrected.add(
            key, self.encode(record, "HistoricalPositionCorrected", "corrected"), []
        )
        self.row_changed(rebuilt)

    # -- contract rules -------------------------------------------------------------------
    async def on_contract_rule(self, event: EventT, intake: Intake) -> None:
        await self.ensure_output_schemas(intake.topic)
        accepted = await intake.accept(event)
        if accepted is None:
            return
        key, row = accepted
        position_key = key.decode()
        position = self.store.get_or_create(position_key)
        schedule = position.schedule.with_rule(
            row["effectiveFrom"], row["lotMethod"], row["sequence"]
        )
        if schedule == position.schedule:
            intake.counted_stale.inc()
            return
        if position.rule_affects_applied_trades(row["effectiveFrom"]):
            # The rule changes reliefs already made: rebuild with it in force.
            events = list(self.store.events(position_key, position.version))
            updated = replay(
                position_key, history_trades(events), schedule, version=position.version + 1
            )
            fix = correction(position, updated, self.prices.price(position.symbol))
            stamp = now_ms()
            self.store.save(updated)
            record = outputs.position_corrected(
                updated, fix, f"rule:{row['eventId']}", row.get("correlationId"), len(events),
                stamp,
            )
            self.corrected.add(
                key, self.encode(record, "HistoricalPositionCorrected", "corrected"), []
            )
        else:
            position.schedule = schedule
            position.version += 1
            updated = position
            self.store.save(updated)
        intake.counted_applied.inc()
        self.row_changed(updated)


POSITION_ROW_SUBJECT = "position-value"


def _output_subject(topic_attr: str) -> str:
    return f"{getattr(CANONICAL_TOPICS, topic_attr)}-value"


OUTPUT_SUBJECTS = (
    POSITION_ROW_SUBJECT,
    *(_output_subject(t) for t in ("trade_applied", "provisional", "corrected")),
)


class _ApplyFailed(PoisonMessage):
    stage = "apply"


def register_position_agents(
    app: faust.App, settings: Settings, serde: AvroSerde, prices: PriceBook
) -> PositionEngine:
    """Create the position tables and the trade, coldpath, contract and price agents."""
    partitions = settings.topic_partitions
    topics = settings.topics
    store = PositionStore(app, partitions, settings.default_lot_method)
    engine = PositionEngine(app, settings, serde, store, prices)
    prices.listeners.append(engine.on_price)

    def position_key(row: Mapping[str, Any]) -> str:
        return f"{row['account']}:{row['symbol']}"

    trades = Intake(
        app, serde, topics.trades, "Trade", partitions,
        validate=lambda row: validate_trade(row, settings.business_date, settings.max_future_days),
        key_of=position_key,
    )
    backdated = Intake(
        app, serde, topics.backdated, "Trade", partitions,
        validate=lambda row: validate_trade(row, date.max - timedelta(days=1), 0),
        key_of=position_key,
    )
    contracts = Intake(
        app, serde, topics.contracts, "ContractRule", partitions,
        validate=validate_contract_rule,
        key_of=lambda row: row["positionKey"],
    )
    market = Intake(
        app, serde, topics.market_prices, "MarketPrice", partitions,
        validate=validate_price,
        key_of=lambda row: row["symbol"],
    )
    prices_table = bytes_table(app, "latest-price", partitions, "latest MarketPrice per symbol")

    def timed(agent: str, handler: Any, intake: Intake) -> Any:
        latency = metrics.PROCESSING_SECONDS.labels(agent=agent)

        async def handle(event: EventT) -> None:
            started = time.perf_counter()
            await handler(event, intake)
            latency.observe(time.perf_counter() - started)

        async def process(stream: faust.StreamT) -> None:
            await process_in_batches(
                stream,
                agent,
                handle,
                intake.dead_letter,
                max_events=settings.batching.max_events,
                within_s=settings.batching.within_s,
                after_batch=engine.publish_due_rows,
            )

        return process

    async def on_price(event: EventT, intake: Intake) -> None:
        accepted = await intake.accept(event)
        if accepted is None:
            return
        key, row = accepted
        updated = next_version(prices_table.get(key), row["sequence"], event.message.value)
        if updated is None:
            intake.counted_stale.inc()
            return
        prices_table[key] = updated
        intake.counted_applied.inc()

    role = settings.worker_role
    if role in ("all", "hotpath"):
        app.agent(trades.source, name="positions-hotpath")(
            timed("positions-hotpath", engine.on_trade, trades)
        )
        app.agent(contracts.source, name="contract-rules")(
            timed("contract-rules", engine.on_contract_rule, contracts)
        )
        app.agent(market.source, name="market-prices")(timed("market-prices", on_price, market))
    if role in ("all", "coldpath"):
        app.agent(backdated.source, name="positions-coldpath")(
            timed("positions-coldpath", engine.on_backdated, backdated)
        )
    return engine
