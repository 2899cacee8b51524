"""All of one position's writes go to one changelog partition, in the order they were made, so a
crash keeps a prefix of them (found by the long reliability run with batched position agents:
after a kill -9 a position was restored PROVISIONAL without the pending record written before
it, and its backdated trade was never replayed; ADR 0010)."""

from __future__ import annotations

import datetime as dt
import weakref
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.streams import _current_event
from faust.topics import Topic

from agents.positions import validate_contract_rule
from app.domain.positions import apply_trade
from app.domain.replay import PROVISIONAL_TRADE_APPLIED, HistoryEvent
from app.domain.trades import TradeInput
from app.errors import ValidationError
from tables.positions import PositionStore


@pytest.fixture
def changelog(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, bytes]]:
    """Every changelog record sent: (topic, partition, key)."""
    sent: list[tuple[str, int, bytes]] = []

    def send_soon(topic: Topic, *, key: Any, partition: int, **kwargs: Any) -> Any:
        sent.append((topic.get_topic_name(), partition, key))
        return SimpleNamespace(message=SimpleNamespace(partition=partition))

    monkeypatch.setattr(Topic, "send_soon", send_soon)
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


def test_history_pending_and_state_of_a_trade_share_one_ordered_changelog(changelog) -> None:
    app = faust.App("test-position-store", broker="memory://", store="memory://")
    app.consumer = SimpleNamespace(topic_partitions=lambda topic: 4)
    store = PositionStore(app, 4, "FIFO")
    event = Event(2)
    token = _current_event.set(weakref.ref(event))
    try:
        position = store.get_or_create("ACC-1:XOM")
        trade = backdated_trade()
        result = apply_trade(position, trade)
        store.append(
            "ACC-1:XOM", HistoryEvent(result.version, PROVISIONAL_TRADE_APPLIED, trade)
        )
        store.add_pending("ACC-1:XOM", "T0")
        store.save(position)
    finally:
        _current_event.reset(token)

    assert len(changelog) == 3
    assert {(topic, partition) for topic, partition, _ in changelog} == {
        ("test-position-store-positions-changelog", 2)
    }
    assert [key for _, _, key in changelog] == [
        b"ACC-1:XOM\x00" + (1).to_bytes(8, "big"),
        b"ACC-1:XOM\x01",
        b"ACC-1:XOM",
    ]
    assert store.pending_trades("ACC-1:XOM") == ["T0"]
    assert [e.trade.trade_id for e in store.events("ACC-1:XOM", 1)] == ["T0"]
    assert store.get("ACC-1:XOM").version == 1


def test_a_contract_rule_for_a_key_with_control_characters_is_rejected() -> None:
    """The store's history and pending keys follow the position key after NUL and SOH."""
    rule = {"positionKey": "ACC-1:XOM", "lotMethod": "FIFO", "effectiveFrom": dt.date(2026, 1, 1)}
    validate_contract_rule(rule)
    with pytest.raises(ValidationError, match="control characters"):
        validate_contract_rule({**rule, "positionKey": "ACC-1:X\x00OM"})
