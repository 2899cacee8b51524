"""Replay and corrections: the arrival-order invariant at the domain level (issue: coldpath).

Whatever order trades arrive in, with duplicates, the hotpath estimate followed by a replay of the
position's history must equal a from-scratch replay of the accepted trades in economic order, and
that must equal the independent reference model run on the sorted trades.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.lot_methods import FIFO, LIFO, LOT_METHODS, LotMethodSchedule
from app.domain.positions import PROVISIONAL, RECONCILED, Position, apply_trade
from app.domain.replay import (
    CORRECTION,
    PROVISIONAL_TRADE_APPLIED,
    TRADE_APPLIED,
    HistoryEvent,
    correction,
    economic_order,
    history_trades,
    replay,
)
from app.domain.trades import TradeInput
from tests.unit.reference_lots import run_reference
from tests.unit.test_positions import (
    ACCOUNT,
    PROPERTY_SETTINGS,
    SYMBOL,
    deliveries,
    lot_rows,
    prices,
    ref_rows,
    rule_sets,
    schedule_of,
    to_ref,
    trade,
    trade_lists,
)

D = Decimal
KEY = f"{ACCOUNT}:{SYMBOL}"


def sorted_unique(trades: list[TradeInput]) -> list[TradeInput]:
    """Economic order written out independently of app.domain.replay.economic_order."""
    unique = {t.trade_id: t for t in reversed(trades)}  # first occurrence wins
    return sorted(
        unique.values(), key=lambda t: (t.effective_date.toordinal(), t.trade_time, t.trade_id)
    )


@PROPERTY_SETTINGS
@given(data=st.data(), default=st.sampled_from(LOT_METHODS), rules=rule_sets)
def test_replay_of_any_delivery_equals_replay_of_the_sorted_set_and_the_reference(
    data: st.DataObject, default: str, rules: dict[date, str]
) -> None:
    trades = data.draw(trade_lists())
    arrival = data.draw(deliveries(trades))
    schedule = schedule_of(default, rules)
    from_arrival = replay(KEY, arrival, schedule)
    from_sorted = replay(KEY, sorted_unique(trades), schedule)
    assert from_arrival.to_state() == from_sorted.to_state()
    assert from_arrival.status == RECONCILED
    assert from_arrival.version == len(trades)
    reference = run_reference([to_ref(t) for t in sorted_unique(trades)], default, rules)
    assert lot_rows(from_arrival) == ref_rows(reference)
    assert Fraction(from_arrival.realized_pnl) == reference.realized
    assert Fraction(from_arrival.quantity) == reference.quantity


@PROPERTY_SETTINGS
@given(data=st.data(), default=st.sampled_from(LOT_METHODS), rules=rule_sets)
def test_hotpath_then_coldpath_converges_to_the_economic_order_replay(
    data: st.DataObject, default: str, rules: dict[date, str]
) -> None:
    """Simulates the agents: the hotpath applies in arrival order and records history; a
    backdated trade marks the position PROVISIONAL and triggers a replay of the history."""
    symbols = ["XYZ", "ABC"]
    trades = [t for symbol in symbols for t in data.draw(trade_lists(max_size=20, symbol=symbol))]
    arrival = data.draw(deliveries(trades))
    schedule = schedule_of(default, rules)
    market = data.draw(prices)
    live = {symbol: Position(ACCOUNT, symbol, schedule) for symbol in symbols}
    history: dict[str, list[dict]] = {symbol: [] for symbol in symbols}
    for item in arrival:
        position = live[item.symbol]
        result = apply_trade(position, item)
        if result.duplicate:
            continue
        kind = PROVISIONAL_TRADE_APPLIED if result.backdated else TRADE_APPLIED
        event = HistoryEvent(result.version, kind, item, item.correlation_id, None, 0)
        history[item.symbol].append(json.loads(json.dumps(event.to_dict())))
        if result.backdated:
            assert position.status == PROVISIONAL
            stored = [HistoryEvent.from_dict(record) for record in history[item.symbol]]
            rebuilt = replay(
                position.position_key,
                history_trades(stored),
                schedule,
                version=position.version + 1,
            )
            fix = correction(position, rebuilt, market)
            assert fix.previous_version + 1 == fix.new_version
            assert fix.after.quantity == position.quantity  # a replay never changes quantity
            history[item.symbol].append(
                HistoryEvent(rebuilt.version, CORRECTION, item, details=fix.to_dict()).to_dict()
            )
            live[item.symbol] = rebuilt
    for symbol in symbols:
        mine = [t for t in trades if t.symbol == symbol]
        expected = replay(f"{ACCOUNT}:{symbol}", sorted_unique(mine), schedule)
        final = live[symbol]
        assert final.same_book_as(expected)
        assert final.status == RECONCILED
        versions = [record["version"] for record in history[symbol]]
        assert versions == list(range(1, len(versions) + 1))
        reference = run_reference([to_ref(t) for t in sorted_unique(mine)], default, rules)
        assert lot_rows(final) == ref_rows(reference)
        assert Fraction(final.realized_pnl) == reference.realized


@PROPERTY_SETTINGS
@given(trades=trade_lists(), method=st.sampled_from(LOT_METHODS))
def test_in_order_hotpath_needs_no_correction(trades: list[TradeInput], method: str) -> None:
    position = Position(ACCOUNT, SYMBOL, LotMethodSchedule(method))
    for item in sorted_unique(trades):
        assert not apply_trade(position, item).backdated
    assert position.status == RECONCILED
    assert position.to_state() == replay(KEY, trades, LotMethodSchedule(method)).to_state()


def test_backdated_buy_changes_which_lots_a_later_sell_relieved() -> None:
    buy_1 = trade("T1", "BUY", "10", "100", day=4)
    sell = trade("T3", "SELL", "10", "130", day=6)
    late_buy = trade("T2", "BUY", "10", "90", day=5)
    schedule = LotMethodSchedule(LIFO)
    live = replay(KEY, [buy_1, sell], schedule)
    assert live.realized_pnl == D(300)  # LIFO had only T1 to relieve
    apply_trade(live, late_buy)
    assert live.status == PROVISIONAL
    rebuilt = replay(KEY, [buy_1, sell, late_buy], schedule, version=live.version + 1)
    assert rebuilt.realized_pnl == D(400)  # LIFO relieves T2 (cost 90), the newest at T3's time
    assert [(lot.lot_id, lot.quantity) for lot in rebuilt.lots] == [("T1", D(10))]
    fix = correction(live, rebuilt, D("120"))
    assert fix.to_dict() == {
        "positionKey": KEY,
        "previousVersion": 3,
        "newVersion": 4,
        "quantityBefore": "10",
        "lotCountBefore": 1,
        "realizedPnlBefore": "300",
        "exposureBefore": "1200",
        "quantityAfter": "10",
        "lotCountAfter": 1,
        "realizedPnlAfter": "400",
        "exposureAfter": "1200",
        "quantityDelta": "0",
        "lotCountDelta": 0,
        "realizedPnlDelta": "100",
        "exposureDelta": "0",
    }
    assert fix.changed
    assert not correction(rebuilt, rebuilt, None).changed
    assert correction(live, rebuilt, None).delta.exposure is None


def test_correction_reports_lot_count_and_exposure_deltas() -> None:
    before = replay(KEY, [trade("T1", "BUY", "10", "100")])
    after = replay(
        KEY, [trade("T1", "BUY", "10", "100"), trade("T0", "BUY", "5", "90", trade_time=0)]
    )
    fix = correction(before, after, D("2.5"))
    assert (fix.delta.quantity, fix.delta.lot_count, fix.delta.exposure) == (D(5), 1, D("12.5"))
    with pytest.raises(ValueError, match="same position"):
        correction(before, replay("ACC-1:OTHER", []), None)


def test_replay_uses_the_rule_in_force_for_each_relieving_trade() -> None:
    schedule = LotMethodSchedule(FIFO).with_rule(date(2024, 3, 6), LIFO)
    trades = [
        trade("T1", "BUY", "10", "100", day=4),
        trade("T2", "BUY", "10", "110", day=4),
        trade("T3", "SELL", "5", "120", day=5),  # FIFO: T1
        trade("T4", "SELL", "5", "120", day=6),  # LIFO: T2
    ]
    rebuilt = replay(KEY, list(reversed(trades)), schedule)
    assert [(lot.lot_id, lot.quantity) for lot in rebuilt.lots] == [("T1", D(5)), ("T2", D(5))]
    assert rebuilt.realized_pnl == D(100) + D(50)


def test_economic_order_keeps_the_first_delivery_of_a_repeated_id() -> None:
    first = trade("T1", "BUY", "10", "100")
    resent_changed = trade("T1", "BUY", "99", "1")
    assert economic_order([first, resent_changed]) == [first]
    assert replay(KEY, [first, resent_changed]).quantity == D(10)


def test_replay_of_nothing_and_of_foreign_trades() -> None:
    empty = replay(KEY, [], version=7)
    assert (empty.account, empty.symbol, empty.lot_count, empty.version) == (ACCOUNT, SYMBOL, 0, 7)
    with pytest.raises(ValueError, match="is for"):
        replay(KEY, [trade("T1", "BUY", "1", "1"), trade("T2", "BUY", "1", "1", symbol="ABC")])
    with pytest.raises(ValueError, match="not"):
        replay("OTHER:KEY", [trade("T1", "BUY", "1", "1")])


def test_history_event_round_trip_and_order() -> None:
    item = trade("T1", "BUY", "1.25", "10.5")
    events = [
        HistoryEvent(2, CORRECTION, item, "c-1", "e-9", 1700000000001, {"newVersion": 2}),
        HistoryEvent(1, PROVISIONAL_TRADE_APPLIED, item, "c-1", None, 1700000000000),
    ]
    stored = [json.loads(json.dumps(event.to_dict())) for event in events]
    loaded = [HistoryEvent.from_dict(record) for record in stored]
    assert loaded == events
    assert history_trades(loaded) == [item, item]
    with pytest.raises(ValueError, match="history event type"):
        HistoryEvent(1, "SOMETHING", item)
