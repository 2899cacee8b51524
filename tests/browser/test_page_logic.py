"""The page's own JavaScript (web/static), run under Node without a browser, checked against the
server's rules: the filter builder only produces filters the server accepts, decimals sort
exactly, the reconnect backoff stays in its bounds, and server entries become AG Grid
transactions that never add a row twice nor touch a row that is not there."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.filter_tree import OPERATOR_TYPES
from app.domain.filters import compile_filter
from app.metadata import blotter_object_type, metadata_json

HARNESS = Path(__file__).resolve().parent / "page_logic.mjs"
METADATA = {entry["name"]: entry for entry in metadata_json()}
DATA_TYPES = sorted({f["dataType"] for t in METADATA.values() for f in t["fields"]})
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class PageLogic:
    """One Node process that evaluates requests against the page's modules."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise AssertionError("node is required for the page tests (see .ci/install-browser.sh)")
        self.proc = subprocess.Popen(
            [node, "--experimental-detect-module", str(HARNESS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __call__(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        assert answer.pop("ok"), answer.get("error")
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def page_logic() -> Iterator[PageLogic]:
    logic = PageLogic()
    yield logic
    logic.close()


# -- decimals --------------------------------------------------------------------------------
def plain(value: Decimal, trailing_zeros: int) -> str:
    text = format(value, "f")
    if trailing_zeros and "." not in text:
        text += "."
    return text + "0" * trailing_zeros


@PROPERTY
@given(st.lists(st.tuples(
    st.decimals(min_value=Decimal("-1e25"), max_value=Decimal("1e25"), allow_nan=False, places=10),
    st.integers(0, 3),
), max_size=40))
def test_decimals_sort_exactly(page_logic: PageLogic, items: list[tuple[Decimal, int]]) -> None:
    values = [plain(value, zeros) for value, zeros in items]
    sorted_by_page = page_logic("sort", values=values)["sorted"]
    assert sorted_by_page == sorted(values, key=Decimal)  # both stable: ties keep input order
    signs = page_logic("signs", values=values)["signs"]
    assert signs == [(Decimal(v) > 0) - (Decimal(v) < 0) for v in values]


def test_decimals_that_floats_cannot_tell_apart_still_sort(page_logic: PageLogic) -> None:
    values = ["0.30000000000000001", "0.3", "-1", "-1.000000000000000001", "12345678901234567.8"]
    assert page_logic("sort", values=values)["sorted"] == sorted(values, key=Decimal)


# -- the filter builder ----------------------------------------------------------------------
def test_builder_offers_exactly_the_operators_the_server_accepts(page_logic: PageLogic) -> None:
    offered = page_logic("operators", types=DATA_TYPES)["operators"]
    for data_type in DATA_TYPES:
        accepted = {op for op, types in OPERATOR_TYPES.items() if data_type in types}
        assert set(offered[data_type]) == accepted, data_type


TEXT = st.text(st.characters(codec="utf-8", exclude_characters=",", exclude_categories=["Cs"]),
               min_size=1, max_size=8).map(str.strip).filter(bool)
SCALAR_TEXT: dict[str, st.SearchStrategy[str]] = {
    "String": TEXT,
    "Integer": st.integers(-(2**31), 2**31 - 1).map(str),
    "Long": st.integers(-(2**53) + 1, 2**53 - 1).map(str),
    "Decimal": st.decimals(min_value=-10**9, max_value=10**9, places=6, allow_nan=False).map(
        lambda d: format(d, "f")),
    "Timestamp": st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2200, 1, 1)).map(
        lambda t: t.isoformat(timespec="milliseconds") + "Z"),
    "Date": st.dates(dt.date(1970, 1, 1), dt.date(2200, 1, 1)).map(lambda d: d.isoformat()),
}


@st.composite
def condition(draw: st.DrawFn, type_name: str) -> dict[str, Any]:
    """A condition as a user fills it in the page: the text typed, or the options picked."""
    fields = [f for f in METADATA[type_name]["fields"] if f["filterable"]]
    field = draw(st.sampled_from(fields))
    data_type = field["dataType"]
    operator = draw(st.sampled_from(sorted(op for op, t in OPERATOR_TYPES.items()
                                           if data_type in t)))
    node: dict[str, Any] = {"kind": "condition", "field": field["name"], "operator": operator,
                            "value": "", "values": [], "ignoreCase": draw(st.booleans())}
    choices = field.get("values") or (["true", "false"] if data_type == "Boolean" else None)
    if choices:
        if operator == "in":
            node["values"] = draw(st.lists(st.sampled_from(choices), min_size=1, unique=True))
        else:
            node["value"] = draw(st.sampled_from(choices))
    elif operator == "in":
        node["value"] = ", ".join(draw(st.lists(SCALAR_TEXT[data_type], min_size=1, max_size=4)))
    else:
        node["value"] = draw(SCALAR_TEXT[data_type])
    return node


def tree(type_name: str) -> st.SearchStrategy[dict[str, Any]]:
    def group(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.builds(
            lambda logical, kids: {"kind": "group", "logical": logical, "children": kids},
            st.sampled_from(["AND", "OR", "NOT"]),
            st.lists(children, max_size=3),
        )

    return group(st.recursive(condition(type_name), group, max_leaves=6))


@PROPERTY
@given(st.data())
def test_every_filter_the_builder_makes_is_accepted_by_the_server(
    page_logic: PageLogic, data: st.DataObject
) -> None:
    type_name = data.draw(st.sampled_from(sorted(METADATA)))
    built = data.draw(tree(type_name))
    native = page_logic("serialize", typeMeta=METADATA[type_name], tree=built)["filter"]
    spec = blotter_object_type(type_name)
    assert spec is not None
    compile_filter(native, spec)  # raises FilterError if the server would refuse it
    for leaf in leaves(native):
        field = spec.get_field(leaf["fieldName"])
        assert field is not None
        if field.data_type == "Decimal" and "value" in leaf:  # exact: sent as typed text
            values = leaf["value"] if isinstance(leaf["value"], list) else [leaf["value"]]
            assert all(isinstance(v, str) for v in values)


def leaves(node: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    if node is None:
        return
    if "fieldName" in node:
        yield node
        return
    if node["logicalOperator"] == "NOT":
        assert len(node["filters"]) == 1  # the server's NOT takes exactly one filter
    for child in node["filters"]:
        yield from leaves(child)


def test_not_over_several_conditions_means_not_all_of_them(page_logic: PageLogic) -> None:
    def leaf(value: str) -> dict[str, Any]:
        return {"kind": "condition", "field": "symbol", "operator": "equals", "value": value,
                "values": [], "ignoreCase": False}

    built = {"kind": "group", "logical": "NOT", "children": [leaf("AAPL"), leaf("MSFT")]}
    native = page_logic("serialize", typeMeta=METADATA["Order"], tree=built)["filter"]
    assert native == {"logicalOperator": "NOT", "filters": [{"logicalOperator": "AND", "filters": [
        {"fieldName": "symbol", "operator": "equals", "value": "AAPL"},
        {"fieldName": "symbol", "operator": "equals", "value": "MSFT"},
    ]}]}
    empty = {"kind": "group", "logical": "AND", "children": []}
    assert page_logic("serialize", typeMeta=METADATA["Order"], tree=empty)["filter"] is None


# -- reconnect backoff -----------------------------------------------------------------------
@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 40), st.floats(0, 1, exclude_max=True)), min_size=1))
def test_backoff_grows_exponentially_with_jitter_and_a_cap(
    page_logic: PageLogic, draws: list[tuple[int, float]]
) -> None:
    attempts = [a for a, _ in draws]
    delays = page_logic("backoff", attempts=attempts, randoms=[r for _, r in draws])["delays"]
    for attempt, delay in zip(attempts, delays, strict=True):
        ceiling = min(30_000, 500 * 2 ** min(attempt, 16))
        assert ceiling / 2 <= delay <= ceiling


# -- server entries -> grid transactions -----------------------------------------------------
@st.composite
def subscription_steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A first subscription's snapshot and changes, then a second subscription (new filter or
    reconnect) whose snapshot replaces the view, then changes again. Entries follow the server's
    semantics loosely: some upserts repeat or lower a sequence (the page must ignore them)."""
    keys = st.sampled_from([f"K{i}" for i in range(6)])
    next_seq: dict[str, int] = {}

    def entry() -> dict[str, Any]:
        key = draw(keys)
        held = next_seq.get(key, 0)
        sequence = held + draw(st.integers(-1, 2))
        next_seq[key] = max(held, sequence)
        if draw(st.integers(0, 4)) == 0:
            return {"op": "remove", "key": key, "sequence": max(held, sequence),
                    "reason": "NO_LONGER_MATCHES"}
        return {"op": "upsert", "key": key, "sequence": sequence, "row": {"v": sequence}}

    steps: list[dict[str, Any]] = []
    for _ in range(2):
        snapshot_keys = draw(st.lists(keys, unique=True, max_size=5))
        steps.append({"kind": "begin"})
        rows = []
        for key in snapshot_keys:
            next_seq[key] = next_seq.get(key, 0) + draw(st.integers(0, 1))
            rows.append({"op": "upsert", "key": key, "sequence": next_seq[key],
                         "row": {"v": next_seq[key]}})
        steps.append({"kind": "snapshot", "entries": rows})
        steps.append({"kind": "end"})
        for _ in range(draw(st.integers(0, 4))):
            steps.append({"kind": "changes",
                          "entries": [entry() for _ in range(draw(st.integers(1, 5)))]})
    return steps


def reference_view(steps: list[dict[str, Any]]) -> dict[str, int]:
    """The view docs/asyncapi.yaml describes: key -> sequence held."""
    held: dict[str, int] = {}
    seen: set[str] | None = None
    for step in steps:
        if step["kind"] == "begin":
            seen = set()
        elif step["kind"] == "end":
            assert seen is not None
            held = {k: s for k, s in held.items() if k in seen}
            seen = None
        else:
            for e in step["entries"]:
                current = held.get(e["key"])
                if e["op"] == "remove":
                    if current is not None and e["sequence"] >= current:
                        del held[e["key"]]
                    continue
                if seen is not None:
                    seen.add(e["key"])
                if current is None or e["sequence"] > current:
                    held[e["key"]] = e["sequence"]
    return held


@PROPERTY
@given(subscription_steps())
def test_entries_become_consistent_grid_transactions(
    page_logic: PageLogic, steps: list[dict[str, Any]]
) -> None:
    result = page_logic("applyEntries", steps=steps)
    grid: dict[str, dict[str, Any]] = {}
    for transaction in result["transactions"]:
        for row in transaction["add"]:
            assert row["__key"] not in grid, f"added twice: {row}"
            grid[row["__key"]] = row
        for row in transaction["update"]:
            assert row["__key"] in grid, f"update of a missing row: {row}"
            grid[row["__key"]] = row
        for row in transaction["remove"]:
            assert grid.pop(row["__key"], None) is not None, f"remove of a missing row: {row}"
    expected = reference_view(steps)
    assert {k: r["__seq"] for k, r in grid.items()} == expected
    assert {k: r["v"] for k, r in grid.items()} == expected  # the row of the version held
    assert sorted(result["inGrid"]) == sorted(expected)
    credited = sum(len(s.get("entries", [])) for s in steps)
    assert result["credited"] == credited  # every row the server sent is granted back
