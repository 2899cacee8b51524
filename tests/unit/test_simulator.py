"""The OMS simulator: deterministic by seed, and everything it emits is valid on the wire."""

from __future__ import annotations

import datetime as dt
import itertools

from agents.positions import validate_contract_rule, validate_price, validate_trade
from app.config import Topics
from app.domain.objects import OBJECT_TYPES, validate_object
from app.serde import AvroSerde, ManifestResolver
from app.simulator import OmsSimulator

SERDE = AvroSerde(ManifestResolver())
DAY = dt.date(2026, 11, 20)
BY_RECORD = {t.record: t for t in OBJECT_TYPES.values()}


def events(seed: int, n: int, backdated: bool = True) -> list:
    sim = OmsSimulator(seed=seed, business_date=DAY, backdated=backdated)
    return list(itertools.islice(sim.events(), n))


def test_same_seed_same_events_other_seed_other_events() -> None:
    assert events(3, 500) == events(3, 500)
    assert events(3, 500) != events(4, 500)


def test_every_event_encodes_decodes_and_passes_its_validation_gate() -> None:
    topics = Topics()
    seen: set[str] = set()
    for event in events(5, 5_000):
        subject = f"{getattr(topics, event.topic_attr)}-value"
        row = SERDE.decode(SERDE.encode(event.value, event.record, subject), event.record)
        seen.add(event.record)
        if event.record in BY_RECORD:
            validate_object(BY_RECORD[event.record], row)
            assert event.key == row[BY_RECORD[event.record].key_field]
        elif event.record == "Trade":
            validate_trade(row, DAY, 30)
            assert event.key == f"{row['account']}:{row['symbol']}"
        elif event.record == "MarketPrice":
            validate_price(row)
        else:
            validate_contract_rule(row)
    assert {"Order", "Execution", "QuoteRequest", "Quote", "Trade", "MarketPrice"} <= seen


def test_backdated_trades_only_when_enabled() -> None:
    def backdated(flag: bool) -> int:
        return sum(
            1
            for e in events(9, 5_000, backdated=flag)
            if e.record == "Trade" and e.value["effectiveDate"] < DAY
        )

    assert backdated(True) > 0
    assert backdated(False) == 0


def test_order_sequences_increase_per_order() -> None:
    last: dict[str, int] = {}
    for event in events(2, 3_000):
        if event.record == "Order":
            oid = event.value["orderId"]
            assert event.value["sequence"] > last.get(oid, 0)
            last[oid] = event.value["sequence"]
