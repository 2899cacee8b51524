"""The replica's version rule, its read API, and decoding of change-feed records."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import ConfigError
from app.metadata import BLOTTER_OBJECT_TYPES
from app.serde import build_serde
from tests.integration.test_orders_slice import order
from web.blotter.config import BlotterConfig
from web.blotter.feed import ChangeFeed, next_poll_time
from web.blotter.replica import Replica


def replica() -> Replica:
    return Replica(tuple(BLOTTER_OBJECT_TYPES))


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 20)), max_size=40))
def test_replica_keeps_the_highest_sequence_whatever_the_order(events) -> None:
    held = replica()
    seen: list[tuple[str, int]] = []
    held.set_listener(lambda previous, current: seen.append((current.key, current.sequence)))
    for key, sequence in events:
        held.apply("Order", key, sequence, {"orderId": key, "sequence": sequence})
    best: dict[str, int] = {}
    for key, sequence in events:
        best[key] = max(best.get(key, -1), sequence)
    assert {k: held.get("Order", k).sequence for k in best} == best
    for key in best:  # each published version is strictly above the previous one of its key
        sequences = [s for k, s in seen if k == key]
        assert sequences == sorted(set(sequences))


def test_unknown_type_is_ignored_and_page_is_keyset_ordered() -> None:
    held = replica()
    assert held.apply("Trade", "t1", 1, {}) is None
    for key in ("d", "b", "a", "c", "e"):
        held.apply("Quote", key, 1, {"quoteId": key})
    assert [r.key for r in held.page("Quote", limit=2)] == ["a", "b"]
    assert [r.key for r in held.page("Quote", limit=2, after="b")] == ["c", "d"]
    assert held.page("Quote", limit=10, after="e") == []
    assert held.count("Quote") == 5 and held.count() == 5


def test_wire_entries_are_built_once_and_render_decimals_as_strings() -> None:
    held = replica()
    version = held.apply("Order", "o1", 3, {"orderId": "o1", "orderQty": Decimal("100.50000000")})
    entry = version.upsert_entry()
    assert version.upsert_entry() is entry
    assert orjson.loads(entry) == {
        "op": "upsert", "key": "o1", "sequence": 3, "row": {"orderId": "o1", "orderQty": "100.5"},
    }
    assert orjson.loads(version.remove_entry())["reason"] == "NO_LONGER_MATCHES"


def test_ready_callbacks_run_once_when_caught_up() -> None:
    held = replica()
    calls: list[str] = []
    held.on_ready(lambda: calls.append("early"))
    held.mark_ready()
    held.mark_ready()
    held.on_ready(lambda: calls.append("late"))
    assert calls == ["early", "late"]


# -- change-feed records --------------------------------------------------------------------------
@pytest.fixture
def feed() -> ChangeFeed:
    return ChangeFeed("127.0.0.1:1", "changes", build_serde(None), replica())


def encoded_order(order_id: str, sequence: int, status: str = "NEW") -> bytes:
    value = order(order_id, sequence, status)
    return build_serde(None).encode(value, "Order", "order-events-value")


def headers(sequence: int | str) -> list[tuple[str, bytes]]:
    return [("object.type", b"Order"), ("object.sequence", str(sequence).encode())]


def test_feed_decodes_and_applies_the_newest_version(feed) -> None:
    feed.apply_record(b"Order:O-1", encoded_order("O-1", 2, "FILLED"), headers(2))
    feed.apply_record(b"Order:O-1", encoded_order("O-1", 1, "NEW"), headers(1))
    row = feed.replica.get("Order", "O-1")
    assert row.sequence == 2
    assert row.row["status"] == "FILLED"
    assert row.row["transactTime"] == dt.datetime(2026, 11, 20, 14, 0, tzinfo=dt.UTC)


def test_feed_skips_stale_records_without_decoding(feed) -> None:
    feed.apply_record(b"Order:O-1", encoded_order("O-1", 5), headers(5))
    feed.apply_record(b"Order:O-1", b"\x00garbage", headers(5))  # a redelivery: never decoded
    assert feed.undecodable == 0 and feed.replica.stale == 1


def test_feed_survives_bad_records(feed) -> None:
    feed.apply_record(b"Order:O-1", b"\x00\x00\x00\x00\x01bad", headers(1))
    feed.apply_record(b"no-colon", encoded_order("O-2", 1), headers(1))
    feed.apply_record(None, encoded_order("O-3", 1), headers(1))
    assert feed.undecodable == 1
    assert feed.replica.count() == 0
    # no sequence header: the row's own sequence decides
    feed.apply_record(b"Order:O-4", encoded_order("O-4", 7), [])
    assert feed.replica.get("Order", "O-4").sequence == 7


def test_position_keys_keep_their_colon_and_tombstones_delete(feed) -> None:
    feed.replica.apply("Position", "ACC-1:AAPL", 3, {"positionKey": "ACC-1:AAPL"})
    feed.apply_record(b"Position:ACC-1:AAPL", None, [])
    assert feed.replica.get("Position", "ACC-1:AAPL") is None


def test_feed_polls_at_once_while_catching_up_or_after_a_full_poll() -> None:
    assert next_poll_time(10.0, 3, 1000, caught_up=False, interval_s=0.01) == 10.0
    assert next_poll_time(10.0, 1000, 1000, caught_up=True, interval_s=0.01) == 10.0


def test_feed_spaces_its_polls_once_caught_up_and_reading_a_trickle() -> None:
    assert next_poll_time(10.0, 1, 1000, caught_up=True, interval_s=0.01) == pytest.approx(10.01)
    assert next_poll_time(10.0, 0, 1000, caught_up=True, interval_s=0.0) == 10.0


# -- configuration --------------------------------------------------------------------------------
def test_config_from_env() -> None:
    config = BlotterConfig.from_env(
        {"BLOTTER_BATCH_INTERVAL_MS": "50", "BLOTTER_WS_COMPRESS": "false",
         "BLOTTER_MAX_PENDING": "25", "BLOTTER_FEED_POLL_INTERVAL_MS": "25"}
    )
    assert config.batch_interval_s == pytest.approx(0.05)
    assert config.feed_poll_interval_s == pytest.approx(0.025)
    assert config.compress is False and config.max_pending == 25
    assert BlotterConfig.from_env({}) == BlotterConfig()


@pytest.mark.parametrize(
    ("name", "value"),
    [("BLOTTER_MAX_PENDING", "0"), ("BLOTTER_WS_COMPRESS", "maybe"),
     ("BLOTTER_BATCH_INTERVAL_MS", "soon")],
)
def test_config_errors_name_the_variable(name, value) -> None:
    with pytest.raises(ConfigError) as caught:
        BlotterConfig.from_env({name: value})
    assert caught.value.variable == name
