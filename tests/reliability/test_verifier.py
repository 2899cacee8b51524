"""The verifier must see what it claims to count: each anomaly, planted in an otherwise faithful
observation, moves exactly its own counter. Plus the registry stand-in against the real client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import DecodeError, SchemaRegistryUnavailable
from app.serde import AvroSerde, RegistryResolver, build_serde
from tests.integration.test_orders_slice import order
from tests.reliability.cluster import parse_lag
from tests.reliability.reference import CatalogDecoder, Expected, Rec, build_expected
from tests.reliability.registry_standin import RegistryStandIn, SchemaCatalog
from tests.reliability.verifier import Observed, Report, compare
from tests.reliability.workload import H_POISON_ID, ChaosStream, reframe

SERDE = build_serde(None)
DECODER = CatalogDecoder(SchemaCatalog.from_dir())
ATTR_OF = {"orders": "orders", "trades": "trades", "quotes": "quotes"}
DAY = dt.date(2026, 11, 20)


def order_rec(order_id: str, sequence: int, offset: int) -> Rec:
    value = SERDE.encode(order(order_id, sequence, "NEW"), "Order", "order-events-value")
    return Rec("orders", 0, offset, order_id.encode(), value, {})


def trade_rec(trade_id: str, side: str, qty: int, price: str, day: dt.date, offset: int) -> Rec:
    value = {
        "eventId": f"E-{trade_id}",
        "sequence": 1,
        "eventTime": dt.datetime(2026, 11, 20, 15, tzinfo=dt.UTC),
        "tradeId": trade_id,
        "account": "A",
        "symbol": "S",
        "side": side,
        "quantity": Decimal(qty),
        "price": Decimal(price),
        "tradeTime": dt.datetime.combine(day, dt.time(10), dt.UTC) + dt.timedelta(seconds=offset),
        "effectiveDate": day,
        "contractId": None,
        "correlationId": None,
        "causationId": None,
        "source": "test",
    }
    data = SERDE.encode(value, "Trade", "trade-events-value")
    return Rec("trades", 0, offset, b"A:S", data, {})


def faithful(expected: Expected) -> Observed:
    """What a perfect system would show for `expected`."""
    observed = Observed()
    for (type_name, object_id), version in expected.objects.items():
        observed.objects[(type_name, object_id)] = (
            200,
            {"sequence": version.sequence, "eventId": version.event_id},
        )
        observed.changes.append((f"{type_name}:{object_id}", version.sequence))
    for position_key in sorted(expected.position_keys()):
        book = expected.book(position_key)
        trades = sorted(t for t, f in expected.trades.items() if f.position_key == position_key)
        observed.positions[position_key] = (
            200,
            {
                "quantity": str(Decimal(book.quantity.numerator) / book.quantity.denominator),
                "realizedPnl": str(Decimal(book.realized.numerator) / book.realized.denominator),
                "lots": [
                    {
                        "lotId": lot.lot_id,
                        "quantity": str(Decimal(lot.quantity.numerator) / lot.quantity.denominator),
                        "costPrice": str(Decimal(lot.cost.numerator) / lot.cost.denominator),
                    }
                    for lot in book.lots
                ],
                "status": "RECONCILED",
                "version": len(trades),
                "lastPrice": None,
            },
        )
        observed.histories[position_key] = (
            200,
            {
                "events": [
                    {"version": v, "type": "TRADE_APPLIED", "tradeId": t}
                    for v, t in enumerate(trades, start=1)
                ]
            },
        )
        for v, t in enumerate(trades, start=1):
            observed.applied.append(("trade-applied", t, v))
            observed.applied_keys.append(("trade-applied", position_key, v))
    return observed


def sample_expected() -> Expected:
    recs = [
        order_rec("O1", 1, 0),
        order_rec("O1", 3, 1),
        order_rec("O1", 2, 2),
        order_rec("O2", 1, 3),
        order_rec("O2", 1, 4),
    ]
    trades = [
        trade_rec("T1", "BUY", 100, "10.5", DAY - dt.timedelta(days=1), 10),
        trade_rec("T3", "SELL", 30, "12.25", DAY, 12),
        trade_rec("T2", "BUY", 50, "11", DAY - dt.timedelta(days=2), 11),  # backdated
        trade_rec("T2", "BUY", 50, "11", DAY - dt.timedelta(days=2), 13),
    ]  # re-sent
    poison = Rec("orders", 0, 5, b"P", b"\x07junk", {H_POISON_ID: b"POISON-0"})
    return build_expected([*recs, *trades, poison], ATTR_OF, DECODER)


def zero_anomalies(report: Report) -> bool:
    return (
        report.lost,
        report.double_applied,
        report.stale_overwrite,
        report.mismatched_positions,
        report.poison_applied,
    ) == (0, 0, 0, 0, 0)


def test_reference_keeps_max_sequence_and_replays_in_economic_order() -> None:
    expected = sample_expected()
    assert expected.objects[("Order", "O1")].sequence == 3
    assert expected.objects[("Order", "O2")].sequence == 1
    assert set(expected.trades) == {"T1", "T2", "T3"}
    book = expected.book("A:S")
    assert book.quantity == 120  # 100 + 50 - 30
    assert [lot.lot_id for lot in book.lots] == ["T2", "T1"]  # FIFO relieved T2 first
    assert book.realized == (Decimal("12.25") - 11) * 30
    assert set(expected.poison) == {"POISON-0"}


def test_faithful_observation_has_no_anomaly() -> None:
    expected = sample_expected()
    observed = faithful(expected)
    poison = expected.poison["POISON-0"]
    observed.dlq.append(Rec("orders-dlq", 0, 0, poison.key, poison.value, poison.headers))
    report = compare(expected, observed)
    assert zero_anomalies(report), dict(report.examples)
    assert report.dlq == report.poison_injected == 1 and report.dlq_unexpected == 0
    assert report.failures() == []


def test_each_planted_anomaly_moves_its_own_counter() -> None:
    expected = sample_expected()

    lost = faithful(expected)
    lost.objects[("Order", "O1")] = (200, {"sequence": 2, "eventId": "E-O1-2"})
    lost.changes = [(k, s) for k, s in lost.changes if k != "Order:O1"] + [("Order:O1", 2)]
    assert compare(expected, lost).lost == 1

    stale = faithful(expected)
    stale.objects[("Order", "O1")] = (200, {"sequence": 2, "eventId": "E-O1-2"})
    assert compare(expected, stale).stale_overwrite == 1  # 3 was published, 2 is served

    doubled = faithful(expected)
    doubled.histories["A:S"][1]["events"].append(
        {"version": 4, "type": "TRADE_APPLIED", "tradeId": "T2"}
    )
    doubled.applied.append(("trade-applied", "T1", 9))
    report = compare(expected, doubled)
    assert report.double_applied == 2  # T2 twice in history, T1 at two versions

    missing_output = faithful(expected)
    missing_output.applied = [a for a in missing_output.applied if a[1] != "T3"]
    assert compare(expected, missing_output).lost == 1

    wrong = faithful(expected)
    wrong.positions["A:S"][1]["lots"][0]["quantity"] = "49"
    assert compare(expected, wrong).mismatched_positions == 1

    provisional = faithful(expected)
    provisional.positions["A:S"][1]["status"] = "PROVISIONAL"
    assert compare(expected, provisional).mismatched_positions == 1


def test_dlq_counts_distinct_poison_and_flags_valid_messages() -> None:
    expected = sample_expected()
    observed = faithful(expected)
    poison = expected.poison["POISON-0"]
    again = Rec("orders-dlq", 0, 0, poison.key, poison.value, poison.headers)
    valid = Rec("orders-dlq", 0, 2, b"O3", b"...", {"dlq.error.message": b"registry down"})
    observed.dlq += [again, again, valid]  # re-delivery dead-letters the same poison twice
    report = compare(expected, observed)
    assert report.dlq == 1 and report.dlq_records == 3 and report.dlq_unexpected == 1
    assert any(f.startswith("dlq_unexpected") for f in report.failures())


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(1, 6)), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_backwards_sequences_counted_per_key(deliveries: list[tuple[int, int]]) -> None:
    """nonmonotonic = records below the running max of their key, whatever the interleaving."""
    expected = Expected()
    observed = Observed(changes=[(f"K{k}", s) for k, s in deliveries])
    want = 0
    highest: dict[int, int] = {}
    for key, seq in deliveries:
        want += seq < highest.get(key, seq)
        highest[key] = max(seq, highest.get(key, seq))
    assert compare(expected, observed).nonmonotonic == want


def test_parse_lag_reads_the_gauge_lines() -> None:
    text = (
        '# HELP blotter_consumer_lag x\nblotter_consumer_lag{partition="3",topic="t-a"} 7.0\n'
        'blotter_events_in_total{topic="t-a"} 5.0\n'
    )
    assert parse_lag(text) == {("t-a", 3): 7.0}


def test_stream_marks_every_poison_and_aliases_schema_ids() -> None:
    stream = ChaosStream(SERDE, seed=5, business_date=DAY, total=400, poison=9)
    stream.alias_ids = {"order-events-value": 1001}
    messages = list(stream.messages())
    poison = [m for m in messages if any(k == H_POISON_ID for k, _ in m.headers)]
    assert len(poison) == 9
    assert len({dict(m.headers)[H_POISON_ID] for m in poison}) == 9
    orders = [m for m in messages if m.topic_attr == "orders" and not m.headers]
    assert orders and all(AvroSerde.schema_id(m.value) == 1001 for m in orders)
    assert stream.counts.total == 400
    assert reframe(b"\x00\x00\x00\x00\x05body", 7) == b"\x00\x00\x00\x00\x07body"


@pytest.fixture
def standin() -> Iterator[RegistryStandIn]:
    registry = RegistryStandIn()
    registry.start()
    yield registry
    registry.stop()


def test_standin_serves_the_app_resolver_and_fails_like_a_registry(
    standin: RegistryStandIn,
) -> None:
    standin.catalog.add_alias(555, "order-events-value")
    resolver = RegistryResolver(standin.url)
    serde = AvroSerde(resolver)
    data = reframe(SERDE.encode(order("O9", 4, "NEW"), "Order", "order-events-value"), 555)
    assert resolver.id_for_subject("trade-events-value") == 5
    standin.outage(True)
    with pytest.raises(SchemaRegistryUnavailable):
        serde.decode(data, "Order")  # never seen id 555: needs the registry
    assert standin.count(503) >= 1
    standin.outage(False)
    assert serde.decode(data, "Order")["sequence"] == 4
    with pytest.raises(DecodeError):
        serde.decode(reframe(data, 424242), "Order")  # 404: poison, not an outage
