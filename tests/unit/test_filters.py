"""The blotter filter compiler: both grammars against an independent naive interpreter.

The naive interpreter below reads a test-owned tree of typed values and states the documented
semantics directly (null makes comparisons false, notEquals is the negation of equals, AG Grid
date filters compare UTC calendar days). Filters are generated together with that tree, then
rendered to JSON in randomly chosen spellings (Decimal as string, int or float, timestamps with
offsets or as epoch millis, ...), so coercion, translation, normalization and compilation are all
checked against it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.fields import FieldSpec, ObjectTypeSpec
from app.domain.filters import (
    INVALID_FILTER,
    UNKNOWN_FIELD,
    CompiledFilter,
    FilterError,
    FilterLimits,
    compile_filter,
    match_all,
    restrict_to_accounts,
)
from app.metadata import blotter_object_type

UTC = dt.UTC
STATUSES = ("NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED")
SIDES = ("BUY", "SELL", "SELL_SHORT")

THING = ObjectTypeSpec(
    name="Thing",
    key_field="id",
    fields=(
        FieldSpec("id", "String"),
        FieldSpec("account", "String"),
        FieldSpec("symbol", "String", nullable=True),
        FieldSpec("status", "Enum", values=STATUSES),
        FieldSpec("side", "Enum", nullable=True, values=SIDES),
        FieldSpec("qty", "Decimal"),
        FieldSpec("price", "Decimal", nullable=True),
        FieldSpec("lots", "Integer", nullable=True),
        FieldSpec("seq", "Long"),
        FieldSpec("flag", "Boolean", nullable=True),
        FieldSpec("ts", "Timestamp", nullable=True),
        FieldSpec("day", "Date", nullable=True),
        FieldSpec("tags", "Array", filterable=False, sortable=False),
    ),
)
FILTERABLE = tuple(f for f in THING.fields if f.filterable)
FIELD = {f.name: f for f in THING.fields}
# Room for anything the generators build; the limits themselves are tested separately.
WIDE = FilterLimits(max_depth=64, max_nodes=100_000, max_in_values=100_000)

# Operators by type, restated from the documented table rather than imported.
ORDERING = ("greaterThan", "greaterThanOrEqual", "lessThan", "lessThanOrEqual")
BASIC = ("equals", "notEquals", "isNull", "isNotNull")
OPS_BY_TYPE = {
    "String": (*BASIC, *ORDERING, "contains", "startsWith", "endsWith", "in"),
    "Enum": (*BASIC, "in"),
    "Integer": (*BASIC, *ORDERING, "in"),
    "Long": (*BASIC, *ORDERING, "in"),
    "Decimal": (*BASIC, *ORDERING, "in"),
    "Boolean": (*BASIC, "in"),
    "Timestamp": (*BASIC, *ORDERING),
    "Date": (*BASIC, *ORDERING, "in"),
}
CASE_OPS = ("equals", "notEquals", "contains", "startsWith", "endsWith", "in")

# -- typed value pools (small, so that filters and rows collide) ---------------------------------

T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
D0 = dt.date(2026, 1, 1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
STRINGS = ("", "A", "AB", "ABC", "Ab", "aB", "b", "BA", "MSFT", "ms", "É", "é")

strings = st.sampled_from(STRINGS)
decimals = st.one_of(
    st.integers(-15, 15).map(lambda n: Decimal(n).scaleb(-1)),
    st.sampled_from([Decimal("100.1"), Decimal("-2.75"), Decimal("1E+3")]),
)
small_ints = st.integers(-4, 4)
longs = st.one_of(small_ints, st.sampled_from([-(2**63), 2**63 - 1]))
dates = st.integers(-3, 3).map(lambda n: D0 + dt.timedelta(days=n))
timestamps = st.one_of(
    st.integers(-8, 8).map(lambda n: T0 + dt.timedelta(hours=6 * n)),
    st.integers(-2 * 86_400_000, 2 * 86_400_000).map(lambda ms: T0 + dt.timedelta(milliseconds=ms)),
)


def typed_values(field: FieldSpec) -> st.SearchStrategy[Any]:
    return {
        "String": strings,
        "Enum": st.sampled_from(field.values or ()),
        "Integer": small_ints,
        "Long": longs,
        "Decimal": decimals,
        "Boolean": st.booleans(),
        "Timestamp": timestamps,
        "Date": dates,
    }[field.data_type]


def row_values(field: FieldSpec) -> st.SearchStrategy[Any]:
    values = typed_values(field)
    if field.data_type == "Decimal":  # Avro decimals decode padded to their scale
        values = st.one_of(values, values.map(lambda d: d.quantize(Decimal("1E-8"))))
    return values


def _drop_nulls(row: dict[str, Any], drop: bool) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None} if drop else row


# Nullable fields are null a quarter of the time; a null is sometimes an absent key instead.
rows = st.tuples(
    st.fixed_dictionaries(
        {
            f.name: st.one_of(st.none(), *[row_values(f)] * 3) if f.nullable else row_values(f)
            for f in FILTERABLE
        }
    ),
    st.booleans(),
).map(lambda pair: _drop_nulls(*pair))


def spelling_options(data_type: str, value: Any) -> list[Any]:
    """Every JSON spelling the compiler must read as ``value``."""
    if data_type == "Decimal":
        options: list[Any] = [str(value), format(value, "E"), str(value.quantize(Decimal("1E-4")))]
        options.append(float(str(value)))
        if value == value.to_integral_value():
            options.append(int(value))
        return options
    if data_type in ("Integer", "Long"):
        return [value, str(value)] + ([float(value)] if abs(value) < 2**53 else [])
    if data_type == "Timestamp":
        offset = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
        return [
            value.isoformat().replace("+00:00", "Z"),
            value.astimezone(offset).isoformat(),
            value.replace(tzinfo=None).isoformat(sep=" "),
            (value - EPOCH) // dt.timedelta(milliseconds=1),
        ]
    if data_type == "Date":
        return [value.isoformat()]
    return [value]


def spellings(data_type: str, value: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(spelling_options(data_type, value))


# -- the naive interpreter ----------------------------------------------------------------------
# Trees: ("leaf", field, operator, value, ignore_case) | ("AND"|"OR", [children]) | ("NOT", child)
# Extra leaf operators for AG Grid date filters on a Timestamp: "day:<AG Grid type>".


def leaf(name: str, op: str, value: Any = None, ignore_case: bool = False) -> tuple[Any, ...]:
    return ("leaf", name, op, value, ignore_case)


def naive(node: tuple[Any, ...], row: dict[str, Any]) -> bool:
    kind = node[0]
    if kind == "AND":
        return all(naive(child, row) for child in node[1])
    if kind == "OR":
        return any(naive(child, row) for child in node[1])
    if kind == "NOT":
        return not naive(node[1], row)
    _, name, op, target, ignore_case = node
    value = row.get(name)
    if op == "isNull":
        return value is None
    if op == "isNotNull":
        return value is not None
    if op == "notEquals":
        return not naive(leaf(name, "equals", target, ignore_case), row)
    if value is None:
        return False
    if op.startswith("day:"):
        return naive_day(op[4:], value.astimezone(UTC).date(), target)
    if ignore_case:
        value = value.lower()
        target = [t.lower() for t in target] if op == "in" else target.lower()
    if op == "equals":
        return value == target
    if op == "in":
        return any(value == t for t in target)
    if op == "greaterThan":
        return value > target
    if op == "greaterThanOrEqual":
        return value >= target
    if op == "lessThan":
        return value < target
    if op == "lessThanOrEqual":
        return value <= target
    if op == "contains":
        return target in value
    if op == "startsWith":
        return value.startswith(target)
    if op == "endsWith":
        return value.endswith(target)
    raise AssertionError(op)


def naive_day(ag_type: str, day: dt.date, target: Any) -> bool:
    if ag_type == "inRange":
        low, high = target
        return low < day < high
    return {
        "equals": day == target,
        "notEqual": day != target,
        "lessThan": day < target,
        "lessThanOrEqual": day <= target,
        "greaterThan": day > target,
        "greaterThanOrEqual": day >= target,
    }[ag_type]


# -- native grammar generator ---------------------------------------------------------------------


@st.composite
def native_leaves(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    field = draw(st.sampled_from(FILTERABLE))
    op = draw(st.sampled_from(OPS_BY_TYPE[field.data_type]))
    ignore_case = field.data_type == "String" and op in CASE_OPS and draw(st.booleans())
    raw: dict[str, Any] = {"fieldName": field.name, "operator": op}
    if ignore_case:
        raw["ignoreCase"] = True
    value: Any = None
    if op in ("isNull", "isNotNull"):
        if draw(st.booleans()):
            raw["value"] = None
    elif op == "in":
        value = draw(st.lists(typed_values(field), max_size=4))
        raw["value"] = [draw(spellings(field.data_type, v)) for v in value]
    else:
        value = draw(typed_values(field))
        raw["value"] = draw(spellings(field.data_type, value))
    return leaf(field.name, op, value, ignore_case), raw


def _group(logical: str, pairs: list[tuple[Any, Any]]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (
        (logical, [tree for tree, _ in pairs]),
        {"logicalOperator": logical, "filters": [raw for _, raw in pairs]},
    )


def _not(pair: tuple[Any, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return ("NOT", pair[0]), {"logicalOperator": "NOT", "filters": [pair[1]]}


native_filters = st.recursive(
    native_leaves(),
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda pairs: _group("AND", pairs)),
        st.lists(children, max_size=4).map(lambda pairs: _group("OR", pairs)),
        children.map(_not),
    ),
    max_leaves=12,
)

# -- AG Grid generator (expected trees hand-written from the documented mapping) ---------------

TEXT_TYPES = ("equals", "notEqual", "contains", "notContains", "startsWith", "endsWith")
SCALAR_TYPES = ("equals", "notEqual", "lessThan", "lessThanOrEqual", "greaterThan")
SCALAR_TYPES += ("greaterThanOrEqual", "inRange")
ENUM_TEXT = st.sampled_from(["fill", "NEW", "new", "ed", "SELL", "sell_", "Buy", "x", ""])
SCALAR_LEAF = {
    "equals": "equals",
    "lessThan": "lessThan",
    "lessThanOrEqual": "lessThanOrEqual",
    "greaterThan": "greaterThan",
    "greaterThanOrEqual": "greaterThanOrEqual",
}


def ag_kind(field: FieldSpec) -> str:
    return {"Timestamp": "date", "Date": "date"}.get(
        field.data_type, "text" if field.data_type in ("String", "Enum", "Boolean") else "number"
    )


def ag_case(
    field: FieldSpec,
    ag_type: str,
    low: Any = None,
    high: Any = None,
    *,
    advanced: bool = False,
    spell: Any = lambda data_type, value: spelling_options(data_type, value)[0],
    day_form: str = "{} 00:00:00",
) -> tuple[Any, dict[str, Any]]:
    """An AG Grid condition on ``field`` and the tree it must mean (the documented mapping).

    ``low``/``high`` are typed; dates stand for days (also for a Timestamp field); ``spell``
    chooses a number filter's JSON spelling.
    """
    kind = ag_kind(field)
    name = field.name
    if ag_type in ("blank", "notBlank"):
        model: dict[str, Any] = {"filterType": kind, "type": ag_type}
        if field.data_type == "String":
            empty = leaf(name, "equals", "")
            if ag_type == "blank":
                return ("OR", [leaf(name, "isNull"), empty]), model
            return ("AND", [leaf(name, "isNotNull"), ("NOT", empty)]), model
        return leaf(name, "isNull" if ag_type == "blank" else "isNotNull"), model
    if field.data_type == "Boolean":
        equal = leaf(name, "equals", low)
        if advanced:
            return equal, {"filterType": "boolean", "type": "true" if low else "false"}
        model = {"filterType": "text", "type": ag_type, "filter": "true" if low else "false"}
        return (equal if ag_type == "equals" else ("NOT", equal)), model
    if kind == "text":
        model = {"filterType": "text", "type": ag_type, "filter": low}
        positive = (
            ag_type.removeprefix("not").replace("Equal", "equals").replace("Contains", "contains")
        )
        tree = leaf(name, positive, low, ignore_case=True)
        return (("NOT", tree) if ag_type.startswith("not") else tree), model
    model = {"filterType": kind, "type": ag_type}
    if kind == "date":
        keys = ("filter", "filterTo") if advanced else ("dateFrom", "dateTo")
        model[keys[0]] = day_form.format(low.isoformat())
        if ag_type == "inRange":
            model[keys[1]] = day_form.format(high.isoformat())
    else:
        model["filter"] = spell(field.data_type, low)
        if ag_type == "inRange":
            model["filterTo"] = spell(field.data_type, high)
    if field.data_type == "Timestamp":
        return leaf(name, "day:" + ag_type, (low, high) if ag_type == "inRange" else low), model
    if ag_type == "notEqual":
        return ("AND", [leaf(name, "isNotNull"), ("NOT", leaf(name, "equals", low))]), model
    if ag_type == "inRange":
        return ("AND", [leaf(name, "greaterThan", low), leaf(name, "lessThan", high)]), model
    return leaf(name, SCALAR_LEAF[ag_type], low), model


def ag_types(field: FieldSpec, advanced: bool) -> tuple[str, ...]:
    if field.data_type == "Boolean":
        return ("equals",) if advanced else ("equals", "notEqual")
    if ag_kind(field) == "text":
        return TEXT_TYPES
    return SCALAR_TYPES[:-1] if advanced else SCALAR_TYPES


@st.composite
def ag_conditions(draw: st.DrawFn, field: FieldSpec, advanced: bool) -> tuple[Any, dict]:
    """One simple condition on ``field`` and the tree it must mean."""
    if draw(st.integers(0, 5)) == 0:
        return ag_case(field, draw(st.sampled_from(["blank", "notBlank"])), advanced=advanced)
    if field.data_type == "Enum":
        values: st.SearchStrategy[Any] = ENUM_TEXT
    elif field.data_type == "Timestamp":
        values = dates
    else:
        values = typed_values(field)
    return ag_case(
        field,
        draw(st.sampled_from(ag_types(field, advanced))),
        draw(values),
        draw(values),
        advanced=advanced,
        spell=lambda data_type, value: draw(spellings(data_type, value)),
        day_form="{}" if advanced else draw(st.sampled_from(["{} 00:00:00", "{}"])),
    )


@st.composite
def ag_column_models(draw: st.DrawFn, field: FieldSpec, in_multi: bool = False) -> tuple:
    """A whole column model (simple, combined, set or multi) and its tree."""
    shape = draw(st.sampled_from(["simple", "combined", "legacy", "set", "multi"]))
    if shape == "multi" and in_multi:
        shape = "simple"
    if shape == "set" and field.data_type in ("Enum", "Boolean", "String", "Decimal"):
        picks = draw(st.lists(st.one_of(st.none(), typed_values(field)), max_size=4))
        values = [v for v in picks if v is not None]
        spelled = [
            None if v is None else ("true" if v else "false") if isinstance(v, bool) else str(v)
            for v in picks
        ]
        tree = leaf(field.name, "in", values)
        if None in picks:
            tree = ("OR", [tree, leaf(field.name, "isNull")])
        return tree, {"filterType": "set", "values": spelled}
    if shape == "multi":
        parts = draw(st.lists(st.one_of(st.none(), ag_column_models(field, True)), max_size=3))
        models = [None if p is None else p[1] for p in parts]
        return ("AND", [p[0] for p in parts if p is not None]), {
            "filterType": "multi",
            "filterModels": models,
        }
    if shape in ("combined", "legacy"):
        operator = draw(st.sampled_from(["AND", "OR"]))
        parts = draw(st.lists(ag_conditions(field, False), min_size=1, max_size=2))
        model: dict[str, Any] = {"filterType": ag_kind(field), "operator": operator}
        if shape == "combined":
            model["conditions"] = [p[1] for p in parts]
        else:
            for index, part in enumerate(parts, start=1):
                model[f"condition{index}"] = part[1]
        return (operator, [p[0] for p in parts]), model
    return draw(ag_conditions(field, False))


@st.composite
def ag_column_filters(draw: st.DrawFn) -> tuple[Any, dict]:
    fields = draw(st.lists(st.sampled_from(FILTERABLE), min_size=1, max_size=4, unique=True))
    parts = [draw(ag_column_models(field)) for field in fields]
    return ("AND", [p[0] for p in parts]), {
        f.name: p[1] for f, p in zip(fields, parts, strict=True)
    }


def _ag_advanced_leaf(field: FieldSpec) -> st.SearchStrategy[tuple[Any, dict]]:
    return ag_conditions(field, True).map(lambda p: (p[0], {**p[1], "colId": field.name}))


ag_advanced_filters = st.recursive(
    st.sampled_from(FILTERABLE).flatmap(_ag_advanced_leaf),
    lambda children: st.tuples(st.sampled_from(["AND", "OR"]), st.lists(children, max_size=3)).map(
        lambda joined: (
            (joined[0], [p[0] for p in joined[1]]),
            {"filterType": "join", "type": joined[0], "conditions": [p[1] for p in joined[1]]},
        )
    ),
    max_leaves=8,
)

# -- properties --------------------------------------------------------------------------------

PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(pair=native_filters, sample=st.lists(rows, min_size=1, max_size=8))
def test_native_filters_match_the_naive_interpreter(pair: tuple, sample: list[dict]) -> None:
    tree, raw = pair
    compiled = compile_filter(raw, THING, WIDE)
    for row in sample:
        assert compiled.predicate(row) == naive(tree, row), (compiled, row)


@PROPERTY
@given(pair=ag_column_filters(), sample=st.lists(rows, min_size=1, max_size=12))
def test_ag_grid_column_models_match_the_naive_interpreter(pair: tuple, sample: list) -> None:
    tree, model = pair
    compiled = compile_filter(model, THING, WIDE)
    for row in sample:
        assert compiled.predicate(row) == naive(tree, row), (model, compiled, row)
    # Each column alone too: an AND of several columns is false for most rows and would hide
    # a wrong translation of one of them.
    for (col_id, column_model), column_tree in zip(model.items(), tree[1], strict=True):
        single = compile_filter({col_id: column_model}, THING, WIDE)
        for row in sample:
            assert single.predicate(row) == naive(column_tree, row), (column_model, single, row)


@PROPERTY
@given(pair=ag_advanced_filters, sample=st.lists(rows, min_size=1, max_size=8))
def test_ag_grid_advanced_models_match_the_naive_interpreter(pair: tuple, sample: list) -> None:
    tree, model = pair
    compiled = compile_filter(model, THING, WIDE)
    for row in sample:
        assert compiled.predicate(row) == naive(tree, row), (model, compiled, row)


@PROPERTY
@given(pair=native_filters | ag_column_filters(), sample=st.lists(rows, max_size=8))
def test_the_canonical_spec_is_a_fixed_point(pair: tuple, sample: list) -> None:
    compiled = compile_filter(pair[1], THING, WIDE)
    again = compile_filter(compiled.spec, THING, WIDE, grammar="native")
    assert again == compiled
    assert hash(again) == hash(compiled)
    assert again.spec == compiled.spec
    for row in sample:
        assert again.predicate(row) == compiled.predicate(row)


@PROPERTY
@given(
    pair=native_filters | ag_column_filters(),
    accounts=st.none() | st.frozensets(strings, max_size=3),
    sample=st.lists(rows, min_size=1, max_size=10),
)
def test_equality_constraints_hold_for_every_matching_row(
    pair: tuple, accounts: frozenset[str] | None, sample: list
) -> None:
    compiled = restrict_to_accounts(compile_filter(pair[1], THING, WIDE), accounts)
    constraints = compiled.equality_constraints()
    if accounts is not None:
        assert constraints["account"] <= accounts
    for row in sample:
        if compiled.predicate(row):
            for name, allowed in constraints.items():
                assert row.get(name) in allowed, (compiled, row, name)


@PROPERTY
@given(
    pair=native_filters,
    accounts=st.frozensets(strings, max_size=3),
    sample=st.lists(rows, min_size=1, max_size=8),
)
def test_restrict_to_accounts_ands_the_entitlement(
    pair: tuple, accounts: frozenset[str], sample: list
) -> None:
    tree, raw = pair
    restricted = restrict_to_accounts(compile_filter(raw, THING, WIDE), accounts)
    for row in sample:
        assert restricted.predicate(row) == (row["account"] in accounts and naive(tree, row))


# -- exhaustive: every operator and AG Grid type on boundary rows --------------------------------
# The properties above compose; these enumerate, so that no (type, operator) pair is left to the
# luck of generation, and rows sit exactly on the boundaries.

MS = dt.timedelta(milliseconds=1)
DAY = dt.timedelta(days=1)
BOUNDARY_ROWS = {
    "String": ["", "ab", "AB", "xAby", "b", "ab ", "é", "É"],
    "Decimal": [
        *(Decimal("100.0999"), Decimal("100.1"), Decimal("100.10000000"), Decimal("100.1001")),
        *(Decimal("-100.1"), Decimal("200"), Decimal("0")),
    ],
    "Integer": [-1, 0, 1, 2],
    "Long": [-(2**63), 0, 1, 2**63 - 1],
    "Boolean": [True, False],
    "Timestamp": [T0 - DAY, T0 - MS, T0, T0 + MS, T0 + DAY - MS, T0 + DAY, T0 + 2 * DAY],
    "Date": [D0 - DAY, D0, D0 + DAY, D0 + 2 * DAY],
}
NATIVE_PROBES = {
    "String": ["ab", "", "AB"],
    "Decimal": [Decimal("100.1"), Decimal("-100.1")],
    "Integer": [0, 1],
    "Long": [0, 2**63 - 1],
    "Boolean": [True, False],
    "Timestamp": [T0, T0 + MS],
    "Date": [D0],
}
AG_PROBES = {
    "String": [("ab", None), ("", None), ("É", None)],
    "Enum": [("fill", None), ("new", None), ("SELL", None), ("", None), ("_", None), ("x", None)],
    "Boolean": [(True, None), (False, None)],
    "Decimal": [(Decimal("100.1"), Decimal("200")), (Decimal("-1"), Decimal("100.1"))],
    "Integer": [(0, 2), (-1, 1)],
    "Long": [(0, 2**63 - 1), (-(2**63), 1)],
    "Timestamp": [(D0, D0 + 2 * DAY), (D0 - DAY, D0 + DAY)],
    "Date": [(D0, D0 + 2 * DAY), (D0 - DAY, D0 + DAY)],
}


def boundary_rows(field: FieldSpec) -> list[dict[str, Any]]:
    values = (
        list(field.values or ()) if field.data_type == "Enum" else BOUNDARY_ROWS[field.data_type]
    )
    return [{field.name: v} for v in values] + [{field.name: None}, {}]


def native_probes(field: FieldSpec) -> list[Any]:
    return (
        list(field.values or ())[:2]
        if field.data_type == "Enum"
        else NATIVE_PROBES[field.data_type]
    )


def test_every_native_operator_on_boundary_rows() -> None:
    checked = 0
    for field in FILTERABLE:
        probes = native_probes(field)
        for op in OPS_BY_TYPE[field.data_type]:
            for ignore_case in (
                (False, True) if field.data_type == "String" and op in CASE_OPS else (False,)
            ):
                cases: list[tuple[Any, Any]] = []
                if op in ("isNull", "isNotNull"):
                    cases.append((None, None))
                elif op == "in":
                    cases.append(
                        (probes, [spelling_options(field.data_type, v)[-1] for v in probes])
                    )
                    cases.append(([], []))
                else:
                    cases += [
                        (v, spelled)
                        for v in probes
                        for spelled in spelling_options(field.data_type, v)
                    ]
                for value, spelled in cases:
                    raw = {"fieldName": field.name, "operator": op, "value": spelled}
                    if ignore_case:
                        raw["ignoreCase"] = True
                    predicate = compile_filter(raw, THING).predicate
                    tree = leaf(field.name, op, value, ignore_case)
                    for row in boundary_rows(field):
                        assert predicate(row) == naive(tree, row), (raw, row)
                        checked += 1
    assert checked > 2000


def _nth_spelling(n: int) -> Any:
    def spell(data_type: str, value: Any) -> Any:
        options = spelling_options(data_type, value)
        return options[n % len(options)]

    return spell


def test_every_ag_grid_condition_on_boundary_rows() -> None:
    checked = 0
    for field in FILTERABLE:
        for advanced in (False, True):
            cases = [ag_case(field, t, advanced=advanced) for t in ("blank", "notBlank")]
            for ag_type in ag_types(field, advanced):
                for low, high in AG_PROBES[field.data_type]:
                    if field.data_type in ("Decimal", "Integer", "Long"):
                        cases += [
                            ag_case(field, ag_type, low, high, spell=_nth_spelling(n))
                            for n in range(len(spelling_options(field.data_type, low)))
                        ]
                    else:
                        cases.append(ag_case(field, ag_type, low, high, advanced=advanced))
            for tree, model in cases:
                raw = {**model, "colId": field.name} if advanced else {field.name: model}
                predicate = compile_filter(raw, THING).predicate
                for row in boundary_rows(field):
                    assert predicate(row) == naive(tree, row), (raw, row)
                    checked += 1
    assert checked > 2000


# -- fuzz: any JSON-ish input is either compiled or refused with FilterError -------------------

VOCABULARY_KEYS = [
    "logicalOperator",
    "filters",
    "fieldName",
    "operator",
    "value",
    "ignoreCase",
    "filterType",
    "type",
    "filter",
    "filterTo",
    "dateFrom",
    "dateTo",
    "values",
    "conditions",
    "condition1",
    "condition2",
    "filterModels",
    "colId",
] + [f.name for f in THING.fields]
VOCABULARY_TEXT = [
    "AND",
    "OR",
    "NOT",
    "and",
    "equals",
    "notEquals",
    "notEqual",
    "greaterThan",
    "greaterThanOrEqual",
    "lessThan",
    "lessThanOrEqual",
    "contains",
    "notContains",
    "startsWith",
    "endsWith",
    "in",
    "isNull",
    "isNotNull",
    "blank",
    "notBlank",
    "inRange",
    "empty",
    "text",
    "number",
    "bigint",
    "date",
    "dateString",
    "set",
    "multi",
    "join",
    "boolean",
    "object",
    "true",
    "false",
    "NEW",
    "FILLED",
    "BUY",
    "100.10",
    "-1e3",
    "1e999",
    "NaN",
    "Infinity",
    "12",
    "2026-01-01",
    "2026-01-01T00:00:00Z",
    "2026-02-30",
    "2026-01-01",
    "00:00:00",
    "9999-12-31T23:59:59-01:00",
] + [f.name for f in THING.fields]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(VOCABULARY_TEXT),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(VOCABULARY_KEYS), st.text(max_size=6)), children, max_size=5
        ),
    ),
    max_leaves=25,
)
TIGHT = FilterLimits(max_depth=3, max_nodes=6, max_in_values=3, max_string_length=8)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=json_values,
    limits=st.sampled_from([FilterLimits(), TIGHT]),
    grammar=st.sampled_from(["auto", "native", "aggrid"]),
    sample=st.lists(rows, max_size=3),
)
def test_any_json_compiles_or_raises_filter_error(
    raw: Any, limits: FilterLimits, grammar: Any, sample: list
) -> None:
    try:
        compiled = compile_filter(raw, THING, limits, grammar=grammar)
    except FilterError as error:
        assert error.code in (INVALID_FILTER, UNKNOWN_FIELD)
        return
    for row in sample:
        assert compiled.predicate(row) in (True, False)


def test_nesting_far_beyond_the_limit_is_refused_without_recursing() -> None:
    raw: dict[str, Any] = {"fieldName": "qty", "operator": "isNull"}
    advanced: dict[str, Any] = {"filterType": "text", "colId": "symbol", "type": "blank"}
    for _ in range(5000):
        raw = {"logicalOperator": "NOT", "filters": [raw]}
        advanced = {"filterType": "join", "type": "AND", "conditions": [advanced]}
    for deep in (raw, advanced):
        with pytest.raises(FilterError) as caught:
            compile_filter(deep, THING)
        assert caught.value.code == INVALID_FILTER
        assert "deeper than 8" in caught.value.message
    nested_value: Any = "x"
    for _ in range(5000):
        nested_value = [nested_value]
    with pytest.raises(FilterError):
        compile_filter({"fieldName": "symbol", "operator": "equals", "value": nested_value}, THING)


# -- validation: code and path -------------------------------------------------------------------


def _leaf(field: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"fieldName": field, "operator": op, "value": value, **extra}


def _and(*filters: Any) -> dict[str, Any]:
    return {"logicalOperator": "AND", "filters": list(filters)}


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = _leaf("qty", "isNull")
    for _ in range(depth - 1):
        node = _and(node)
    return node


NATIVE_ERRORS = [
    ([], INVALID_FILTER, ""),
    ("status = NEW", INVALID_FILTER, ""),
    ({"foo": 1}, INVALID_FILTER, ""),
    ({"logicalOperator": "XOR", "filters": []}, INVALID_FILTER, "logicalOperator"),
    ({"logicalOperator": "AND"}, INVALID_FILTER, "filters"),
    ({"logicalOperator": "AND", "filters": {}}, INVALID_FILTER, "filters"),
    ({"logicalOperator": "NOT", "filters": []}, INVALID_FILTER, "filters"),
    ({"logicalOperator": "NOT", "filters": [_nested(1), _nested(1)]}, INVALID_FILTER, "filters"),
    (_and(_leaf("nope", "equals", 1)), UNKNOWN_FIELD, "filters[0].fieldName"),
    (_leaf(5, "equals", 1), INVALID_FILTER, "fieldName"),  # type: ignore[arg-type]
    (_leaf("tags", "isNull"), INVALID_FILTER, "fieldName"),
    (_leaf("symbol", "like", "A%"), INVALID_FILTER, "operator"),
    (_leaf("symbol", 3, "A"), INVALID_FILTER, "operator"),  # type: ignore[arg-type]
    (_leaf("qty", "contains", "1"), INVALID_FILTER, "operator"),
    (_leaf("status", "greaterThan", "NEW"), INVALID_FILTER, "operator"),
    (_leaf("flag", "lessThan", True), INVALID_FILTER, "operator"),
    (_leaf("ts", "in", ["2026-01-01T00:00:00Z"]), INVALID_FILTER, "operator"),
    (_leaf("status", "startsWith", "NE"), INVALID_FILTER, "operator"),
    ({"fieldName": "qty", "operator": "equals"}, INVALID_FILTER, "value"),
    (_leaf("qty", "equals", None), INVALID_FILTER, "value"),
    (_leaf("qty", "equals", "abc"), INVALID_FILTER, "value"),
    (_leaf("qty", "equals", True), INVALID_FILTER, "value"),
    (_leaf("qty", "equals", "NaN"), INVALID_FILTER, "value"),
    (_leaf("qty", "equals", float("inf")), INVALID_FILTER, "value"),
    (_leaf("qty", "equals", "1e200"), INVALID_FILTER, "value"),
    (_leaf("qty", "equals", " 1"), INVALID_FILTER, "value"),
    (_leaf("lots", "equals", 1.5), INVALID_FILTER, "value"),
    (_leaf("lots", "equals", 2**31), INVALID_FILTER, "value"),
    (_leaf("seq", "equals", "12a"), INVALID_FILTER, "value"),
    (_leaf("seq", "equals", False), INVALID_FILTER, "value"),
    (_leaf("flag", "equals", "true"), INVALID_FILTER, "value"),
    (_leaf("status", "equals", "BOGUS"), INVALID_FILTER, "value"),
    (_leaf("status", "equals", "new"), INVALID_FILTER, "value"),
    (_leaf("ts", "equals", "yesterday"), INVALID_FILTER, "value"),
    (_leaf("ts", "equals", True), INVALID_FILTER, "value"),
    (_leaf("ts", "equals", 10**20), INVALID_FILTER, "value"),
    (_leaf("day", "equals", "2026-1-1"), INVALID_FILTER, "value"),
    (_leaf("day", "equals", "2026-02-30"), INVALID_FILTER, "value"),
    (_leaf("symbol", "equals", 5), INVALID_FILTER, "value"),
    (_leaf("symbol", "in", "AAPL"), INVALID_FILTER, "value"),
    (_leaf("symbol", "in", ["A", None]), INVALID_FILTER, "value[1]"),
    (_and(_leaf("qty", "in", ["1", "2", "x"])), INVALID_FILTER, "filters[0].value[2]"),
    (_leaf("qty", "equals", "1", ignoreCase=True), INVALID_FILTER, "ignoreCase"),
    (_leaf("symbol", "lessThan", "A", ignoreCase=True), INVALID_FILTER, "ignoreCase"),
    (_leaf("symbol", "equals", "A", ignoreCase="yes"), INVALID_FILTER, "ignoreCase"),
    (_leaf("symbol", "equals", "A", extra=1), INVALID_FILTER, "extra"),
    ({"logicalOperator": "OR", "filters": [], "id": 1}, INVALID_FILTER, "id"),
    (
        _and(_leaf("qty", "isNull"), {"logicalOperator": "OR", "filters": [_leaf("qty", "gt", 1)]}),
        INVALID_FILTER,
        "filters[1].filters[0].operator",
    ),
    (
        _and(
            _leaf("qty", "isNull"),
            {"logicalOperator": "OR", "filters": [_leaf("qty", "equals", "x")]},
        ),
        INVALID_FILTER,
        "filters[1].filters[0].value",
    ),
    (_nested(9), INVALID_FILTER, "filters[0]" + ".filters[0]" * 7),
    (_and(*[_leaf("qty", "isNull")] * 200), INVALID_FILTER, "filters[199]"),
    (_leaf("symbol", "in", ["A"] * 1001), INVALID_FILTER, "value"),
    (_leaf("symbol", "equals", "A" * 1025), INVALID_FILTER, "value"),
    (_leaf("symbol", "in", ["A", "B" * 1025]), INVALID_FILTER, "value[1]"),
    (_leaf("symbol", "equals", {"$ne": "A"}), INVALID_FILTER, "value"),
    (_leaf("status", "equals", 5), INVALID_FILTER, "value"),
    ({"logicalOperator": "AND", "filters": [5]}, INVALID_FILTER, "filters[0]"),
    ({"logicalOperator": "OR", "filters": [{"operator": "isNull"}]}, INVALID_FILTER, "filters[0]"),
]


@pytest.mark.parametrize(("raw", "code", "path"), NATIVE_ERRORS)
def test_invalid_native_filters_are_refused_with_code_and_path(
    raw: Any, code: str, path: str
) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(raw, THING)
    assert (caught.value.code, caught.value.path) == (code, path), caught.value


def test_limits_at_the_boundary_are_accepted() -> None:
    compile_filter(_nested(8), THING)
    compile_filter(_and(*[_leaf("qty", "isNull")] * 199), THING)
    compile_filter(_leaf("symbol", "in", ["A"] * 1000), THING)
    compile_filter(_leaf("symbol", "equals", "A" * 1024), THING)
    small = FilterLimits(max_depth=2, max_nodes=3, max_in_values=2, max_string_length=3)
    compile_filter(_and(_leaf("qty", "isNull"), _leaf("symbol", "in", ["abc", "d"])), THING, small)
    for too_big in (
        _nested(3),
        _leaf("symbol", "in", ["a"] * 3),
        _leaf("symbol", "equals", "abcd"),
    ):
        with pytest.raises(FilterError):
            compile_filter(too_big, THING, small)


def test_limits_must_be_sane() -> None:
    for bad in ({"max_depth": 0}, {"max_depth": 1000}, {"max_nodes": 0}):
        with pytest.raises(ValueError):
            FilterLimits(**bad)


_TEXT = {"filterType": "text", "type": "equals", "filter": "x"}
_DEEP_JOIN: dict[str, Any] = {"filterType": "text", "colId": "symbol", "type": "blank"}
for _ in range(8):
    _DEEP_JOIN = {"filterType": "join", "type": "OR", "conditions": [_DEEP_JOIN]}

AG_GRID_ERRORS = [
    ({"nope": _TEXT}, UNKNOWN_FIELD, "nope"),
    ({"tags": _TEXT}, INVALID_FILTER, "tags"),
    (
        {"qty": {"filterType": "text", "type": "contains", "filter": "1"}},
        INVALID_FILTER,
        "qty.type",
    ),
    ({"qty": {"filterType": "number", "type": "between", "filter": 1}}, INVALID_FILTER, "qty.type"),
    (
        {"qty": {"filterType": "number", "type": "inRange", "filter": 1}},
        INVALID_FILTER,
        "qty.filterTo",
    ),
    (
        {"qty": {"filterType": "number", "type": "equals", "filter": "x"}},
        INVALID_FILTER,
        "qty.filter",
    ),
    ({"qty": {"filterType": "number", "type": "equals"}}, INVALID_FILTER, "qty.filter"),
    ({"qty": {"filterType": "fancy", "type": "equals"}}, INVALID_FILTER, "qty.filterType"),
    ({"qty": {"filterType": ["text"], "type": "equals"}}, INVALID_FILTER, "qty.filterType"),
    ({"qty": {"filterType": "number", "type": None}}, INVALID_FILTER, "qty.type"),
    (
        {"price": {"filterType": "number", "operator": "XOR", "conditions": []}},
        INVALID_FILTER,
        "price.operator",
    ),
    (
        {"price": {"filterType": "number", "operator": "OR", "conditions": [_TEXT, 5]}},
        INVALID_FILTER,
        "price.conditions[0].filter",
    ),
    (
        {"price": {"filterType": "number", "operator": "OR", "conditions": "x"}},
        INVALID_FILTER,
        "price.conditions",
    ),
    (
        {"price": {"filterType": "number", "operator": "OR", "condition1": 5}},
        INVALID_FILTER,
        "price.condition1",
    ),
    (
        {"status": {"filterType": "set", "values": ["NEW", "BOGUS"]}},
        INVALID_FILTER,
        "status.values[1]",
    ),
    ({"status": {"filterType": "set", "values": "NEW"}}, INVALID_FILTER, "status.values"),
    ({"status": {"filterType": "set", "values": ["NEW"] * 1001}}, INVALID_FILTER, "status.values"),
    ({"ts": {"filterType": "set", "values": ["2026-01-01"]}}, INVALID_FILTER, "ts"),
    (
        {"ts": {"filterType": "date", "type": "equals", "dateFrom": "2026-01-01 10:00:00"}},
        INVALID_FILTER,
        "ts.dateFrom",
    ),
    (
        {"ts": {"filterType": "date", "type": "inRange", "dateFrom": "2026-01-01"}},
        INVALID_FILTER,
        "ts.dateTo",
    ),
    (
        {"ts": {"filterType": "date", "type": "contains", "dateFrom": "2026-01-01"}},
        INVALID_FILTER,
        "ts.type",
    ),
    (
        {"symbol": {"filterType": "date", "type": "equals", "dateFrom": "2026-01-01"}},
        INVALID_FILTER,
        "symbol",
    ),
    (
        {"day": {"filterType": "date", "type": "equals", "dateFrom": "2026-02-30 00:00:00"}},
        INVALID_FILTER,
        "day.dateFrom",
    ),
    (
        {"ts": {"filterType": "date", "type": "greaterThan", "dateFrom": "9999-12-31"}},
        INVALID_FILTER,
        "ts",
    ),
    (
        {"symbol": {"filterType": "text", "type": "inRange", "filter": "A"}},
        INVALID_FILTER,
        "symbol.type",
    ),
    (
        {"status": {"filterType": "text", "type": "equals", "filter": 5}},
        INVALID_FILTER,
        "status.filter",
    ),
    (
        {
            "status": {
                "filterType": "multi",
                "filterModels": [None, {"filterType": "set", "values": ["X"]}],
            }
        },
        INVALID_FILTER,
        "status.filterModels[1].values[0]",
    ),
    (
        {"status": {"filterType": "multi", "filterModels": {}}},
        INVALID_FILTER,
        "status.filterModels",
    ),
    (
        {"filterType": "join", "type": "AND", "conditions": [{**_TEXT, "colId": "nope"}]},
        UNKNOWN_FIELD,
        "conditions[0].colId",
    ),
    ({"filterType": "join", "type": "NOT", "conditions": []}, INVALID_FILTER, "type"),
    ({"filterType": "join", "type": "AND", "conditions": None}, INVALID_FILTER, "conditions"),
    ({"filterType": "join", "type": "AND", "conditions": [7]}, INVALID_FILTER, "conditions[0]"),
    ({"filterType": "boolean", "colId": "flag", "type": "maybe"}, INVALID_FILTER, ""),
    ({"filterType": "boolean", "colId": "symbol", "type": "true"}, INVALID_FILTER, ""),
    (_DEEP_JOIN, INVALID_FILTER, "conditions[0]" + ".conditions[0]" * 7),
]


@pytest.mark.parametrize(("raw", "code", "path"), AG_GRID_ERRORS)
def test_invalid_ag_grid_models_are_refused_with_code_and_path(
    raw: Any, code: str, path: str
) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(raw, THING)
    assert (caught.value.code, caught.value.path) == (code, path), caught.value


def test_a_column_model_with_a_non_object_entry_is_refused_when_aggrid_is_forced() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter({"qty": "x"}, THING, grammar="aggrid")
    assert (caught.value.code, caught.value.path) == (INVALID_FILTER, "qty")


def test_filter_error_serializes_for_the_protocol() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(_and(_leaf("nope" * 100, "equals", 1)), THING)
    body = caught.value.to_json()
    assert body["code"] == UNKNOWN_FIELD
    assert body["path"] == "filters[0].fieldName"
    assert len(body["message"]) < 120  # the client's 400-character name is not echoed whole


# -- semantics, by example --------------------------------------------------------------------


def _matches(raw: Any, row: dict[str, Any]) -> bool:
    return compile_filter(raw, THING).predicate(row)


def test_decimal_comparisons_are_exact() -> None:
    avro_padded = {"qty": Decimal("100.10000000")}
    assert _matches(_leaf("qty", "equals", "100.10"), avro_padded)
    assert _matches(_leaf("qty", "equals", "100.1"), avro_padded)
    assert _matches(_leaf("qty", "equals", 100.1), avro_padded)  # via str(): "100.1"
    assert _matches(_leaf("qty", "equals", "1.001E+2"), avro_padded)
    assert not _matches(_leaf("qty", "equals", "100.100000001"), avro_padded)
    assert not _matches(_leaf("qty", "greaterThan", "100.1"), avro_padded)
    assert _matches(_leaf("qty", "greaterThan", "100.09999999"), avro_padded)
    assert _matches(_leaf("qty", "in", ["1", 100.1]), avro_padded)
    # A float is taken at its shortest repr, not its binary value:
    assert not _matches(_leaf("qty", "equals", 0.1 + 0.2), {"qty": Decimal("0.3")})
    assert _matches(_leaf("qty", "equals", 0.3), {"qty": Decimal("0.3")})


def test_timestamps_are_compared_as_utc_instants() -> None:
    row = {"ts": dt.datetime(2026, 1, 1, 8, 0, tzinfo=UTC)}
    for same in (
        "2026-01-01T10:00:00+02:00",
        "2026-01-01T08:00:00Z",
        "2026-01-01T08:00:00.000Z",
        "2026-01-01 08:00:00",  # no offset: UTC
        1767254400000,  # epoch millis
    ):
        assert _matches(_leaf("ts", "equals", same), row), same
    assert _matches(_leaf("ts", "greaterThan", "2026-01-01"), row)  # a bare date is midnight
    assert not _matches(_leaf("ts", "greaterThan", "2026-01-01T03:00:00-05:00"), row)


def test_dates_compare_as_dates() -> None:
    row = {"day": dt.date(2026, 1, 2)}
    assert _matches(_leaf("day", "equals", "2026-01-02"), row)
    assert _matches(_leaf("day", "in", ["2026-01-01", "2026-01-02"]), row)
    assert _matches(_leaf("day", "lessThan", "2026-01-03"), row)


def test_null_values_fail_comparisons_but_match_not_equals() -> None:
    for row in ({}, {"price": None}):
        assert not _matches(_leaf("price", "equals", "1"), row)
        assert _matches(_leaf("price", "notEquals", "1"), row)
        assert not _matches(_leaf("price", "greaterThan", "1"), row)
        assert not _matches(_leaf("price", "lessThanOrEqual", "1"), row)
        assert _matches(
            {"logicalOperator": "NOT", "filters": [_leaf("price", "lessThan", "1")]}, row
        )
        assert not _matches(_leaf("price", "in", ["1"]), row)
        assert not _matches(_leaf("symbol", "contains", ""), row)
        assert _matches(_leaf("price", "isNull"), row)
        assert not _matches(_leaf("price", "isNotNull"), row)


def test_case_insensitive_text_operators() -> None:
    row = {"symbol": "AaPl"}
    assert _matches(_leaf("symbol", "equals", "aapl", ignoreCase=True), row)
    assert not _matches(_leaf("symbol", "equals", "aapl"), row)
    assert _matches(_leaf("symbol", "startsWith", "AA", ignoreCase=True), row)
    assert _matches(_leaf("symbol", "in", ["MSFT", "AAPL"], ignoreCase=True), row)
    assert not _matches(_leaf("symbol", "notEquals", "AAPL", ignoreCase=True), row)


def test_no_filter_and_empty_groups() -> None:
    for nothing in (None, {}, {"logicalOperator": "AND", "filters": []}):
        compiled = compile_filter(nothing, THING)
        assert compiled.matches_all
        assert compiled.predicate({}) is True
        assert compiled == match_all(THING)
    never = compile_filter({"logicalOperator": "OR", "filters": []}, THING)
    assert not never.matches_all
    assert never.predicate({"qty": Decimal(1)}) is False
    assert _matches(_leaf("symbol", "in", []), {"symbol": "A"}) is False


def test_equivalent_spellings_normalize_to_one_spec() -> None:
    a = compile_filter(
        _and(
            _leaf("qty", "equals", "100.10"), _and(_leaf("status", "in", ["NEW", "FILLED", "NEW"]))
        ),
        THING,
    )
    b = compile_filter(
        _and(_leaf("qty", "equals", 100.1), _leaf("status", "in", ["FILLED", "NEW"])), THING
    )
    assert a == b
    assert hash(a) == hash(b)
    assert a.spec == {
        "logicalOperator": "AND",
        "filters": [
            {"fieldName": "qty", "operator": "equals", "value": "100.1"},
            {"fieldName": "status", "operator": "in", "value": ["FILLED", "NEW"]},
        ],
    }
    negated = compile_filter(
        {"logicalOperator": "NOT", "filters": [_leaf("side", "equals", "BUY")]}, THING
    )
    assert negated.spec == {"fieldName": "side", "operator": "notEquals", "value": "BUY"}
    ts = compile_filter(_leaf("ts", "equals", "2026-01-01T10:00:00.5+02:00"), THING)
    assert ts.spec["value"] == "2026-01-01T08:00:00.500Z"
    assert a != compile_filter(_leaf("qty", "equals", "100.1"), THING)


def test_equality_constraints_by_example() -> None:
    def constraints(raw: Any) -> dict[str, frozenset[Any]]:
        return compile_filter(raw, THING).equality_constraints()

    assert constraints(_leaf("account", "equals", "A1")) == {"account": frozenset({"A1"})}
    assert constraints(
        _and(
            _leaf("account", "in", ["A1", "A2"]),
            _leaf("status", "equals", "NEW"),
            _leaf("qty", "greaterThan", "5"),
            _leaf("account", "in", ["A2", "A3"]),
        )
    ) == {"account": frozenset({"A2"}), "status": frozenset({"NEW"})}
    assert constraints(
        {
            "logicalOperator": "OR",
            "filters": [
                _and(_leaf("symbol", "equals", "A"), _leaf("status", "equals", "NEW")),
                _leaf("symbol", "in", ["B", "C"]),
            ],
        }
    ) == {"symbol": frozenset({"A", "B", "C"})}
    assert constraints(_leaf("qty", "equals", "100.10"))["qty"] == frozenset({Decimal("100.1")})
    assert constraints(
        {"logicalOperator": "NOT", "filters": [_leaf("symbol", "notEquals", "A")]}
    ) == {"symbol": frozenset({"A"})}
    assert constraints({"logicalOperator": "NOT", "filters": [_leaf("symbol", "in", ["A"])]}) == {}
    assert constraints(_leaf("symbol", "equals", "A", ignoreCase=True)) == {}
    assert constraints(None) == {}
    # AG Grid: set filters and text filters on enums are exact, text on strings is not.
    assert constraints(
        {
            "status": {"filterType": "set", "values": ["NEW", "FILLED"]},
            "side": {"filterType": "text", "type": "startsWith", "filter": "sell"},
            "symbol": {"filterType": "text", "type": "equals", "filter": "AAPL"},
        }
    ) == {"status": frozenset({"NEW", "FILLED"}), "side": frozenset({"SELL", "SELL_SHORT"})}


def test_mistyped_row_values_never_raise() -> None:
    """Rows are typed by the engine; if one is not, its leaves are false instead of raising."""
    mistyped = {
        "qty": "abc",
        "price": Decimal("sNaN"),
        "symbol": 5,
        "ts": dt.datetime(2026, 1, 1),  # naive
        "day": "2026-01-01",
    }
    false_leaves = [
        _leaf("qty", "greaterThan", "1"),
        _leaf("qty", "lessThanOrEqual", "1"),
        _leaf("price", "equals", "1"),
        _leaf("price", "lessThan", "1"),
        _leaf("price", "in", ["1", "2"]),
        _leaf("symbol", "contains", "5"),
        _leaf("symbol", "startsWith", "5", ignoreCase=True),
        _leaf("ts", "greaterThanOrEqual", "2025-01-01T00:00:00Z"),
        _leaf("day", "lessThan", "2027-01-01"),
    ]
    for raw in false_leaves:
        assert _matches(raw, mistyped) is False, raw
    assert _matches(_leaf("price", "notEquals", "1"), mistyped) is True
    assert _matches(_leaf("symbol", "notEquals", "5", ignoreCase=True), mistyped) is True


def test_compiled_filter_protocol() -> None:
    compiled = compile_filter(_leaf("symbol", "equals", "A"), THING)
    assert compiled({"symbol": "A"}) is True
    assert compiled != "not a filter"
    assert repr(compiled) == f"CompiledFilter(Thing, {compiled.spec_json})"
    assert compiled.spec is not compiled.spec  # callers may mutate their copy
    with pytest.raises(ValueError):
        compile_filter(_leaf("symbol", "equals", "A"), THING, grammar="sql")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        restrict_to_accounts(compiled, frozenset({"A", 5}))  # type: ignore[arg-type]


def test_restrict_to_accounts_edges() -> None:
    compiled = compile_filter(_leaf("status", "equals", "NEW"), THING)
    assert restrict_to_accounts(compiled, None) is compiled
    nobody = restrict_to_accounts(compiled, frozenset())
    assert not nobody.predicate({"account": "A1", "status": "NEW"})
    assert nobody.equality_constraints()["account"] == frozenset()
    many = restrict_to_accounts(compiled, frozenset(f"A{i}" for i in range(5000)))  # no size cap
    assert many.predicate({"account": "A4999", "status": "NEW"})
    with pytest.raises(ValueError):
        restrict_to_accounts(compiled, frozenset({"A1"}), account_field="qty")
    with pytest.raises(ValueError):
        restrict_to_accounts(compiled, frozenset({"A1"}), account_field="missing")


# -- AG Grid models next to their hand-written native equivalents ----------------------------

AG_GRID_EQUIVALENTS = [
    ({"qty": {"filterType": "number", "type": "empty"}}, None),
    (
        {"symbol": {"filterType": "text", "type": "equals", "filter": "AAPL"}},
        _leaf("symbol", "equals", "aapl", ignoreCase=True),
    ),
    (
        {"symbol": {"filterType": "text", "type": "notContains", "filter": "a"}},
        {"logicalOperator": "NOT", "filters": [_leaf("symbol", "contains", "a", ignoreCase=True)]},
    ),
    (
        {"symbol": {"filterType": "text", "type": "blank"}},
        {
            "logicalOperator": "OR",
            "filters": [_leaf("symbol", "isNull"), _leaf("symbol", "equals", "")],
        },
    ),
    (
        {"qty": {"filterType": "number", "type": "greaterThan", "filter": 100}},
        _leaf("qty", "greaterThan", "100"),
    ),
    (
        {"price": {"filterType": "number", "type": "notEqual", "filter": 5.5}},
        _and(_leaf("price", "isNotNull"), _leaf("price", "notEquals", "5.5")),
    ),
    (
        {
            "price": {
                "filterType": "number",
                "operator": "OR",
                "conditions": [
                    {"filterType": "number", "type": "lessThan", "filter": 1},
                    {"filterType": "number", "type": "inRange", "filter": 10, "filterTo": 20},
                ],
            }
        },
        {
            "logicalOperator": "OR",
            "filters": [
                _leaf("price", "lessThan", "1"),
                _and(_leaf("price", "greaterThan", "10"), _leaf("price", "lessThan", "20")),
            ],
        },
    ),
    (
        {"status": {"filterType": "set", "values": ["NEW", "FILLED"]}},
        _leaf("status", "in", ["FILLED", "NEW"]),
    ),
    (
        {"side": {"filterType": "set", "values": ["BUY", None]}},
        {
            "logicalOperator": "OR",
            "filters": [_leaf("side", "in", ["BUY"]), _leaf("side", "isNull")],
        },
    ),
    (
        {"status": {"filterType": "text", "type": "contains", "filter": "fill"}},
        _leaf("status", "in", ["FILLED", "PARTIALLY_FILLED"]),
    ),
    (
        {"flag": {"filterType": "set", "values": ["true"]}},
        _leaf("flag", "in", [True]),
    ),
    (
        {
            "ts": {
                "filterType": "date",
                "type": "inRange",
                "dateFrom": "2026-01-01 00:00:00",
                "dateTo": "2026-01-04 00:00:00",
            }
        },
        _and(
            _leaf("ts", "greaterThanOrEqual", "2026-01-02T00:00:00Z"),
            _leaf("ts", "lessThan", "2026-01-04T00:00:00Z"),
        ),
    ),
    (
        {"ts": {"filterType": "date", "type": "equals", "dateFrom": "2026-01-02 00:00:00"}},
        _and(
            _leaf("ts", "greaterThanOrEqual", "2026-01-02T00:00:00Z"),
            _leaf("ts", "lessThan", "2026-01-03T00:00:00Z"),
        ),
    ),
    (
        {"day": {"filterType": "date", "type": "lessThan", "dateFrom": "2026-01-02 00:00:00"}},
        _leaf("day", "lessThan", "2026-01-02"),
    ),
    (
        {
            "symbol": {"filterType": "text", "type": "startsWith", "filter": "a"},
            "lots": {"filterType": "number", "type": "blank"},
        },
        _and(_leaf("symbol", "startsWith", "a", ignoreCase=True), _leaf("lots", "isNull")),
    ),
    (
        {
            "filterType": "join",
            "type": "OR",
            "conditions": [
                {"filterType": "boolean", "colId": "flag", "type": "true"},
                {"filterType": "number", "colId": "seq", "type": "lessThanOrEqual", "filter": 3},
            ],
        },
        {
            "logicalOperator": "OR",
            "filters": [_leaf("flag", "equals", True), _leaf("seq", "lessThanOrEqual", 3)],
        },
    ),
]


@pytest.mark.parametrize(("model", "native"), AG_GRID_EQUIVALENTS)
def test_ag_grid_models_translate_to_their_native_equivalent(model: dict, native: dict) -> None:
    translated = compile_filter(model, THING)
    expected = compile_filter(native, THING)
    assert translated.spec == expected.spec
    assert translated == expected


@settings(max_examples=100, deadline=None)
@given(sample=st.lists(rows, min_size=1, max_size=10))
def test_ag_grid_equivalents_select_the_same_rows(sample: list[dict]) -> None:
    for model, native in AG_GRID_EQUIVALENTS:
        translated = compile_filter(model, THING).predicate
        expected = compile_filter(native, THING).predicate
        for row in sample:
            assert translated(row) == expected(row), (model, row)


def test_compiles_against_the_real_order_metadata() -> None:
    order = blotter_object_type("Order")
    assert order is not None
    compiled = compile_filter(
        {
            "symbol": {"filterType": "text", "type": "equals", "filter": "aapl"},
            "orderQty": {"filterType": "number", "type": "greaterThan", "filter": 100},
            "status": {"filterType": "set", "values": ["NEW", "FILLED"]},
            "transactTime": {
                "filterType": "date",
                "type": "inRange",
                "dateFrom": "2026-01-01 00:00:00",
                "dateTo": "2026-01-31 00:00:00",
            },
        },
        order,
    )
    row = {
        "symbol": "AAPL",
        "orderQty": Decimal("100.00000001"),
        "status": "NEW",
        "transactTime": dt.datetime(2026, 1, 15, 14, 30, tzinfo=UTC),
    }
    assert compiled.predicate(row)
    assert not compiled.predicate({**row, "orderQty": Decimal("100.00000000")})
    assert not compiled.predicate({**row, "status": "CANCELED"})
    assert compiled.equality_constraints() == {"status": frozenset({"NEW", "FILLED"})}
    assert isinstance(compiled, CompiledFilter)
