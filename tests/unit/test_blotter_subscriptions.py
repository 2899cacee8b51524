"""View semantics, flow control and fan-out of the blotter stream, without sockets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import metrics
from tests.unit.test_blotter_harness import Harness, ModelClient, drain, order_row, rendered, send
from web.blotter import protocol
from web.blotter.config import BlotterConfig
from web.blotter.principal import Principal
from web.blotter.subscriptions import LIVE, SNAPSHOT

ACCOUNTS = ("A", "B", "C")
STATUSES = ("NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED")
QTYS = ("0", "50", "100", "100.5", "250")

# (native filter, the same condition written by hand in Python)
FILTERS: dict[str, tuple[dict[str, Any] | None, Any]] = {
    "all": (None, lambda r: True),
    "account": (
        {"fieldName": "account", "operator": "equals", "value": "A"},
        lambda r: r["account"] == "A",
    ),
    "open_in_b": (
        {
            "logicalOperator": "AND",
            "filters": [
                {"fieldName": "account", "operator": "in", "value": ["B", "C"]},
                {"fieldName": "status", "operator": "in", "value": ["NEW", "PARTIALLY_FILLED"]},
            ],
        },
        lambda r: r["account"] in ("B", "C") and r["status"] in ("NEW", "PARTIALLY_FILLED"),
    ),
    "big_or_filled": (
        {
            "logicalOperator": "OR",
            "filters": [
                {"fieldName": "orderQty", "operator": "greaterThan", "value": "100"},
                {"fieldName": "status", "operator": "equals", "value": "FILLED"},
            ],
        },
        lambda r: r["orderQty"] > Decimal(100) or r["status"] == "FILLED",
    ),
    "not_a": (
        {
            "logicalOperator": "NOT",
            "filters": [{"fieldName": "account", "operator": "equals", "value": "A"}],
        },
        lambda r: r["account"] != "A",
    ),
}


def subscribe(session, sub_id: str, name: str, credits: int | None = 1000, **extra: Any) -> None:
    message: dict[str, Any] = {"type": "subscribe", "id": sub_id, "objectType": "Order", **extra}
    if FILTERS[name][0] is not None:
        message["filter"] = FILTERS[name][0]
    if credits is not None:
        message["credits"] = credits
    send(session, message)


def expected_view(latest: dict[str, dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    condition = FILTERS[name][1]
    return {key: rendered(row) for key, row in latest.items() if condition(row)}


def counter(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# -- the view invariant, as a property ------------------------------------------------------------
event = st.tuples(
    st.just("event"),
    st.sampled_from(("K1", "K2", "K3", "K4", "K5", "K6")),
    st.integers(1, 12),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(STATUSES),
    st.sampled_from(QTYS),
)
grant = st.tuples(st.just("grant"), st.integers(0, 9), st.integers(1, 5))
flush = st.tuples(st.just("flush"), st.integers(0, 1), st.integers(1, 3))
subscribe_step = st.tuples(
    st.just("subscribe"), st.integers(0, 1), st.sampled_from(sorted(FILTERS))
)
steps = st.lists(st.one_of(event, event, event, grant, flush, subscribe_step), max_size=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, initial_credits=st.integers(0, 3), max_rows=st.integers(1, 3))
def test_view_at_quiet_is_the_latest_matching_versions(steps, initial_credits, max_rows) -> None:
    """Random events; two connections subscribing at random points (equal filters share a
    group, a late one takes its snapshot from the group); random credits and partial flushes.
    At quiet each client view equals the latest versions matching its filter, no more rows than
    credits were ever sent, and sequences only rise per key (checked by the model client)."""
    harness = Harness(BlotterConfig(max_batch_rows=max_rows, max_pending=1000))
    sessions = [harness.session(), harness.session()]
    clients = [ModelClient(), ModelClient()]
    latest: dict[str, dict[str, Any]] = {}
    granted: dict[tuple[int, str], int] = {}
    for step in steps:
        if step[0] == "event":
            _, key, seq, account, status, qty = step
            row = order_row(key, seq, account=account, status=status, qty=qty)
            harness.replica.apply("Order", key, seq, row)
            if key not in latest or seq > latest[key]["sequence"]:
                latest[key] = row
        elif step[0] == "subscribe" and (step[1], step[2]) not in granted:
            subscribe(sessions[step[1]], step[2], step[2], credits=initial_credits)
            granted[(step[1], step[2])] = initial_credits
        elif step[0] == "grant" and granted:
            which, sub_id = sorted(granted)[step[1] % len(granted)]
            send(sessions[which], {"type": "request", "id": sub_id, "n": step[2]})
            granted[(which, sub_id)] += step[2]
        elif step[0] == "flush":
            for _ in range(step[2]):
                clients[step[1]].apply(sessions[step[1]].collect(max_frames=1))
        for (which, sub_id), credits in granted.items():
            view = clients[which].views.get(sub_id)
            assert view is None or view.received <= credits

    for which, sub_id in granted:
        send(sessions[which], {"type": "request", "id": sub_id, "n": 1000})
    for session, client in zip(sessions, clients, strict=True):
        drain(session, client)
        assert client.errors == []
    for which, sub_id in granted:
        view = clients[which].views[sub_id]
        assert view.snapshot_ended
        assert view.rows == expected_view(latest, sub_id)
    for session in sessions:
        session.close()
    assert harness.fanout.group_count == 0


# -- snapshot and changes -------------------------------------------------------------------------
def test_snapshot_then_changes_with_remove_when_a_row_stops_matching() -> None:
    harness = Harness()
    harness.order("K1", 1, account="A")
    harness.order("K2", 1, account="B")
    session, client = harness.session(), ModelClient()
    subscribe(session, "s1", "account")
    drain(session, client)
    assert client.control[0]["type"] == "subscribed"
    assert client.views["s1"].rows == {"K1": rendered(order_row("K1", 1, account="A"))}

    harness.order("K2", 2, account="A")  # starts matching
    harness.order("K1", 2, account="B")  # stops matching: leaves the account index too
    drain(session, client)
    assert set(client.views["s1"].rows) == {"K2"}
    assert client.views["s1"].rows["K2"]["sequence"] == 2


def test_stale_and_duplicate_versions_never_reach_clients() -> None:
    harness = Harness()
    session, client = harness.session(), ModelClient()
    subscribe(session, "s1", "all")
    harness.order("K1", 5, status="FILLED")
    harness.order("K1", 3, status="NEW")
    harness.order("K1", 5, status="CANCELED")
    drain(session, client)
    assert client.views["s1"].rows["K1"]["status"] == "FILLED"
    assert client.views["s1"].received == 1


def test_snapshot_rows_use_credits_and_snapshot_end_follows_the_last_row() -> None:
    harness = Harness()
    for i in range(5):
        harness.order(f"K{i}", 1)
    session, client = harness.session(), ModelClient()
    subscribe(session, "s1", "all", credits=2)
    drain(session, client)
    view = client.views["s1"]
    assert view.received == 2 and not view.snapshot_ended
    harness.order("K0", 2)  # already sent: waits for snapshotEnd
    harness.order("K4", 2)  # not sent yet: the snapshot carries the newer version
    send(session, {"type": "request", "id": "s1", "n": 10})
    drain(session, client)
    assert view.snapshot_ended
    assert {k: r["sequence"] for k, r in view.rows.items()} == {
        "K0": 2, "K1": 1, "K2": 1, "K3": 1, "K4": 2,
    }
    assert view.received == 6  # five snapshot rows and one change


def test_subscriptions_are_held_until_the_replica_caught_up() -> None:
    harness = Harness(ready=False)
    session, client = harness.session(), ModelClient()
    subscribe(session, "s1", "all")
    harness.order("K1", 1)
    drain(session, client)
    assert [m["type"] for m in client.control] == ["subscribed"]
    assert client.views["s1"].received == 0 and not client.views["s1"].snapshot_ended
    harness.order("K2", 1)
    harness.replica.mark_ready()
    drain(session, client)
    assert set(client.views["s1"].rows) == {"K1", "K2"}
    assert client.views["s1"].snapshot_ended


def test_deleted_object_is_removed_with_reason() -> None:
    harness = Harness()
    harness.order("K1", 1)
    session, client = harness.session(), ModelClient()
    subscribe(session, "s1", "all")
    drain(session, client)
    frames: list[bytes] = []
    harness.replica.delete("Order", "K1")
    frames = session.collect()
    assert b'"reason":"DELETED"' in frames[0]
    client.apply(frames)
    assert client.views["s1"].rows == {}


# -- flow control ---------------------------------------------------------------------------------
def test_no_credit_conflates_per_key_then_sends_latest_only() -> None:
    harness = Harness()
    session, client = harness.session(), ModelClient()
    subscribe(session, "s1", "all", credits=0)
    drain(session, client)
    conflated_before = counter("blotter_ws_rows_conflated_total")
    for seq in range(1, 101):
        harness.order(f"K{seq % 3}", seq)
    assert session.collect() == []  # nothing without credit
    sub = session.subscriptions["s1"]
    assert len(sub.pending) == 3  # bounded by distinct keys, not by events
    send(session, {"type": "request", "id": "s1", "n": 1000})
    drain(session, client)
    view = client.views["s1"]
    assert view.received == 3
    assert {k: r["sequence"] for k, r in view.rows.items()} == {"K0": 99, "K1": 100, "K2": 98}
    assert counter("blotter_ws_rows_conflated_total") - conflated_before == 97


def test_upsert_then_remove_while_stalled_is_sent_as_remove_or_nothing() -> None:
    harness = Harness()
    harness.order("K1", 1, account="A")
    session, client = harness.session(), ModelClient()
    subscribe(session, "s1", "account", credits=1)
    drain(session, client)  # K1 sent; credits exhausted
    harness.order("K1", 2, account="A")
    harness.order("K1", 3, account="B")  # the client holds K1: must become a remove
    harness.order("K2", 1, account="A")
    harness.order("K2", 2, account="B")  # never sent: nothing to undo
    send(session, {"type": "request", "id": "s1", "n": 10})
    frames = session.collect()
    client.apply(frames)
    assert client.views["s1"].rows == {}
    assert client.views["s1"].received == 2  # snapshot K1, then one remove
    assert b'"op":"remove"' in frames[-1] and b'"K2"' not in frames[-1]


def test_slow_consumer_past_the_bound_closes_only_that_subscription() -> None:
    harness = Harness(BlotterConfig(max_pending=3))
    session, client = harness.session(), ModelClient()
    subscribe(session, "slow", "all", credits=0)
    subscribe(session, "fast", "all", credits=100)
    drain(session, client)  # both snapshots (empty) delivered: changes flow from here
    closes_before = counter("blotter_ws_slow_consumer_closes_total")
    for i in range(5):
        harness.order(f"K{i}", 1)
    drain(session, client)
    assert client.views["slow"].errors == [protocol.SLOW_CONSUMER]
    assert "slow" not in session.subscriptions
    assert len(client.views["fast"].rows) == 5
    assert counter("blotter_ws_slow_consumer_closes_total") - closes_before == 1
    harness.order("K9", 1)
    send(session, {"type": "ping"})
    drain(session, client)
    assert client.control[-1]["type"] == "pong"
    assert "K9" in client.views["fast"].rows
    # the id is free again: a fresh subscription gets a fresh snapshot
    subscribe(session, "slow", "all", credits=100)
    drain(session, client)
    assert len(client.views["slow"].rows) == 6


def test_request_caps_credits_and_unknown_subscription_is_an_error() -> None:
    harness = Harness(BlotterConfig(max_credits=50))
    session, client = harness.session(), ModelClient()
    subscribe(session, "s1", "all", credits=10**6)
    assert session.subscriptions["s1"].credits == 50
    send(session, {"type": "request", "id": "nope", "n": 5})
    drain(session, client)
    assert client.errors[-1]["code"] == protocol.UNKNOWN_SUBSCRIPTION
    assert client.errors[-1]["id"] == "nope"


def test_control_queue_overflow_asks_to_close_the_connection() -> None:
    harness = Harness(BlotterConfig(max_control_queue=10))
    session = harness.session()
    for _ in range(11):
        send(session, {"type": "ping"})
    assert session.close_code == protocol.CLOSE_SLOW_CONNECTION


# -- fan-out: index, grouping, shared serialization, entitlements ---------------------------------
def test_indexed_subscriptions_are_not_evaluated_for_other_accounts() -> None:
    harness = Harness()
    session = harness.session()
    subscribe(session, "s1", "account")
    group = session.subscriptions["s1"].group
    calls = []
    original = group.predicate
    group.predicate = lambda row: calls.append(row["orderId"]) or original(row)
    for i in range(50):
        harness.order(f"B{i}", 1, account="B")
    harness.order("A1", 1, account="A")
    assert calls == ["A1"]


def test_equal_filters_share_one_group_and_one_serialization(monkeypatch) -> None:
    import web.blotter.replica as replica_module

    harness = Harness()
    renders = []
    real = replica_module.json_row
    monkeypatch.setattr(
        replica_module, "json_row", lambda row: renders.append(row["orderId"]) or real(row)
    )
    sessions = [harness.session() for _ in range(3)]
    clients = [ModelClient() for _ in sessions]
    for session in sessions:
        subscribe(session, "s1", "account")
    assert harness.fanout.group_count == 1
    harness.order("K1", 1, account="A")
    for session, client in zip(sessions, clients, strict=True):
        drain(session, client)
        assert set(client.views["s1"].rows) == {"K1"}
    assert renders == ["K1"]


def test_entitlements_restrict_every_filter() -> None:
    harness = Harness()
    harness.order("K1", 1, account="A")
    harness.order("K2", 1, account="B")
    session, client = harness.session(Principal("u1", frozenset({"B"}))), ModelClient()
    subscribe(session, "s1", "all")
    drain(session, client)
    harness.order("K3", 1, account="A")
    harness.order("K4", 1, account="B")
    drain(session, client)
    assert set(client.views["s1"].rows) == {"K2", "K4"}


def test_unsubscribe_stops_changes_and_frees_the_group() -> None:
    harness = Harness()
    session, client = harness.session(), ModelClient()
    subscribe(session, "s1", "all")
    drain(session, client)
    send(session, {"type": "unsubscribe", "id": "s1"})
    harness.order("K1", 1)
    drain(session, client)
    assert client.control[-1] == {"type": "unsubscribed", "id": "s1"}
    assert client.views["s1"].received == 0
    assert harness.fanout.group_count == 0


def test_states_progress_from_snapshot_to_live() -> None:
    harness = Harness()
    harness.order("K1", 1)
    session = harness.session()
    subscribe(session, "s1", "all", credits=0)
    sub = session.subscriptions["s1"]
    assert sub.state is SNAPSHOT
    send(session, {"type": "request", "id": "s1", "n": 1})
    session.collect()
    assert sub.state is LIVE


@pytest.mark.parametrize("credits", [None, 7])
def test_subscribed_ack_reports_credits_and_normalized_filter(credits) -> None:
    harness = Harness(BlotterConfig(default_credits=42))
    session, client = harness.session(), ModelClient()
    subscribe(session, "s1", "account", credits=credits)
    drain(session, client)
    ack = client.control[0]
    assert ack["credits"] == (42 if credits is None else credits)
    assert ack["filter"]["fieldName"] == "account"
