"""All of one position's writes go to one changelog partition, in the order they were made, so a
crash keeps a prefix of them (found by the long reliability run with batched position agents:
after a kill -9 a position was restored PROVISIONAL without the pending record written before
it, and its backdated trade was never replayed; ADR 0010). A position is a snapshot plus the
trades recorded after it (ADR 0011): every prefix of its writes loads as the state after the
operations whose commit record is in that prefix."""

from __future__ import annotations

import datetime as dt
import weakref
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from faust.streams import _current_event
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.positions import validate_contract_rule
from app.domain.positions import PROVISIONAL, RECONCILED, apply_trade
from app.domain.replay import (
    CORRECTION,
    PROVISIONAL_TRADE_APPLIED,
    TRADE_APPLIED,
    HistoryEvent,
    history_trades,
    replay,
)
from app.domain.trades import TradeInput
from app.errors import CorruptState, ValidationError
from app.output_batches import OutputBatches
from tables.positions import SNAPSHOT_EVERY, PositionStore, history_key
from tests.unit.test_positions import deliveries, trade_lists


@pytest.fixture
def changelog(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, bytes, bytes]]:
    return record_changelog(monkeypatch)


def record_changelog(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, bytes, bytes]]:
    """Every changelog record written, in the order queued: (topic, partition, key, value)."""
    sent: list[tuple[str, int, bytes, bytes]] = []
    queue = OutputBatches.add

    def add(batches: OutputBatches, key: Any, value: Any, headers: Any, partition: Any) -> None:
        sent.append((batches.topic, partition, key, value))
        queue(batches, key, value, headers, partition)

    monkeypatch.setattr(OutputBatches, "add", add)
    return sent


class Event:
    """Faust's current event, as far as a table write reads it (its partition)."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(topic="trade-events", partition=partition)


def backdated_trade() -> TradeInput:
    return TradeInput.from_avro(
        {
            "tradeId": "T0",
            "account": "ACC-1",
            "symbol": "XOM",
            "side": "BUY",
            "quantity": Decimal("5"),
            "price": Decimal("101.25"),
            "tradeTime": dt.datetime(2026, 12, 1, 14, 30, tzinfo=dt.UTC),
            "effectiveDate": dt.date(2026, 12, 1),
            "correlationId": "corr-T0",
            "causationId": None,
            "eventId": "ev-T0",
            "sequence": 1,
        }
    )


def new_store(name: str = "test-position-store") -> PositionStore:
    app = faust.App(name, broker="memory://", store="memory://")
    app.consumer = SimpleNamespace(topic_partitions=lambda topic: 4)
    return PositionStore(app, 4, "FIFO")


class current:
    """Faust's current event for table writes (the partition they go to)."""

    def __init__(self, partition: int = 2) -> None:
        self.event = Event(partition)

    def __enter__(self) -> None:
        self.token = _current_event.set(weakref.ref(self.event))

    def __exit__(self, *exc: object) -> None:
        _current_event.reset(self.token)


def record(store: PositionStore, trade: TradeInput) -> bool:
    """What the hotpath does with one trade; False when it is a duplicate or rejected."""
    position = store.get_or_create(trade.position_key)
    if position.is_applied(trade.trade_id):
        return False
    try:
        result = apply_trade(position, trade)
    except (ArithmeticError, ValueError):
        store.forget(trade.position_key)  # the cached object may be half-applied
        return False
    kind = PROVISIONAL_TRADE_APPLIED if result.backdated else TRADE_APPLIED
    store.record_trade(
        position, HistoryEvent(result.version, kind, trade), pending=result.backdated
    )
    return True


def correct(store: PositionStore, trade: TradeInput) -> None:
    """What the coldpath does with one backdated trade."""
    position = store.get(trade.position_key)
    events = list(store.events(position.position_key, position.version))
    still_pending = [t for t in store.pending_trades(position.position_key) if t != trade.trade_id]
    rebuilt = replay(
        position.position_key,
        history_trades(events),
        position.schedule,
        version=position.version + 1,
        status=PROVISIONAL if still_pending else RECONCILED,
    )
    store.record_correction(
        rebuilt, HistoryEvent(rebuilt.version, CORRECTION, trade), still_pending
    )


def test_history_pending_and_state_of_a_trade_share_one_ordered_changelog(changelog) -> None:
    store = new_store()
    later = sell("T1", 1)  # 2026-12-03, so T0 (2026-12-01) arrives backdated
    with current(2):
        assert record(store, later)
        assert record(store, backdated_trade())

    assert {(topic, partition) for topic, partition, _, _ in changelog} == {
        ("test-position-store-positions-changelog", 2)
    }
    assert [key for _, _, key, _ in changelog] == [
        b"ACC-1:XOM\x00" + (1).to_bytes(8, "big"),
        b"ACC-1:XOM",
        b"ACC-1:XOM\x01",
        b"ACC-1:XOM\x00" + (2).to_bytes(8, "big"),
    ], "a position's first trade writes a snapshot; a backdated trade its pending record first"
    assert store.pending_trades("ACC-1:XOM") == ["T0"]
    assert [e.trade.trade_id for e in store.events("ACC-1:XOM", 2)] == ["T1", "T0"]
    store.forget("ACC-1:XOM")
    assert store.get("ACC-1:XOM").version == 2
    assert store.get("ACC-1:XOM").status == PROVISIONAL


def sell(trade_id: str, minute: int) -> TradeInput:
    return TradeInput(
        trade_id=trade_id, account="ACC-1", symbol="XOM", side="SELL", quantity=Decimal("1"),
        price=Decimal("102"), trade_time=minute, effective_date=dt.date(2026, 12, 3),
    )


def test_a_trade_writes_its_history_event_and_a_snapshot_only_every_so_often(changelog) -> None:
    store = new_store()
    with current():
        for n in range(1, 131):
            assert record(store, sell(f"S{n}", n))
    snapshots = [orjson.loads(v)["version"] for _, _, k, v in changelog if k == b"ACC-1:XOM"]
    assert snapshots == [1, 1 + SNAPSHOT_EVERY, 1 + 2 * SNAPSHOT_EVERY]
    assert len(changelog) == 130 + len(snapshots)
    expected = store.get("ACC-1:XOM").to_state()
    store.forget("ACC-1:XOM")
    loaded = store.get("ACC-1:XOM")
    assert loaded.to_state() == expected, "the snapshot at 129 plus the trade at 130"
    assert loaded.quantity == Decimal("-130")


@settings(max_examples=60, deadline=None)
@given(data=st.data(), snapshot_every=st.integers(1, 6))
def test_every_prefix_of_a_positions_writes_loads_as_the_state_it_committed(
    data: st.DataObject, snapshot_every: int
) -> None:
    """Trades (some backdated, some delivered twice, some rejected) and coldpath corrections:
    a crash keeps any prefix of the writes, and the position loaded from it must be the state
    after the last operation whose commit record (a trade's history event, a correction's
    snapshot) is in the prefix: never a mix, never a later trade without its pending record."""
    trades = data.draw(trade_lists(max_size=25))
    arrival = data.draw(deliveries(trades))
    with pytest.MonkeyPatch.context() as patch:
        sent = record_changelog(patch)
        writer = new_store("test-prefix-writer")
        writer.snapshot_every = snapshot_every
        reader = new_store("test-prefix-reader")
        committed: list[tuple[int, dict[str, Any], list[str]]] = []  # commit index, state, pending
        with current():
            for trade in arrival:
                already = len(sent)
                if record(writer, trade):
                    position = writer.get(trade.position_key)
                    new_keys = [k for _, _, k, _ in sent[already:]]
                    # a position's first trade commits with its snapshot, any other trade with
                    # its history event
                    commit_key = (
                        b"ACC-1:XYZ" if position.version == 1 else history_key("ACC-1:XYZ",
                                                                              position.version)
                    )
                    index = already + new_keys.index(commit_key)
                    committed.append(
                        (index, position.to_state(), writer.pending_trades(position.position_key))
                    )
                pending = writer.pending_trades("ACC-1:XYZ")
                if pending and data.draw(st.booleans(), label="run the coldpath"):
                    correct(writer, next(t for t in trades if t.trade_id == pending[0]))
                    version = writer.get("ACC-1:XYZ").version
                    index = max(
                        i for i, (_, _, k, v) in enumerate(sent)
                        if k == b"ACC-1:XYZ" and orjson.loads(v)["version"] == version
                    )
                    committed.append((
                        index, writer.get("ACC-1:XYZ").to_state(),
                        writer.pending_trades("ACC-1:XYZ"),
                    ))
        records = [(key, value) for _, _, key, value in sent]
        for end in range(len(records) + 1):
            if end:  # the prefix grows by one record: a later write of a key replaces it
                reader.positions.data[records[end - 1][0]] = records[end - 1][1]
            reader.forget("ACC-1:XYZ")
            loaded = reader.get("ACC-1:XYZ")
            before = [c for c in committed if c[0] < end]
            if not before:
                assert loaded is None, f"nothing committed in the first {end} records"
                continue
            _, state, pending_then = before[-1]
            assert loaded is not None and loaded.to_state() == state, f"prefix of {end}"
            for trade_id in pending_then:
                assert trade_id in reader.pending_trades("ACC-1:XYZ") or loaded.status == (
                    RECONCILED
                ), f"{trade_id} applied provisionally but not pending after {end} records"


def test_a_contract_rule_for_a_key_with_control_characters_is_rejected() -> None:
    """The store's history and pending keys follow the position key after NUL and SOH."""
    rule = {"positionKey": "ACC-1:XOM", "lotMethod": "FIFO", "effectiveFrom": dt.date(2026, 1, 1)}
    validate_contract_rule(rule)
    with pytest.raises(ValidationError, match="control characters"):
        validate_contract_rule({**rule, "positionKey": "ACC-1:X\x00OM"})


def test_a_history_event_that_does_not_apply_at_its_version_stops_the_load(changelog) -> None:
    """Damaged state is reported, never built on: here the trade after the snapshot is one the
    snapshot already holds."""
    store = new_store()
    with current():
        assert record(store, sell("S1", 1))
        store.positions[history_key("ACC-1:XOM", 2)] = orjson.dumps(
            HistoryEvent(2, TRADE_APPLIED, sell("S1", 1)).to_dict()
        )
    store.forget("ACC-1:XOM")
    with pytest.raises(CorruptState, match=r"history event 2 \(S1\) does not follow version 1"):
        store.get("ACC-1:XOM")
