"""AG Grid filter models, translated to the native predicate tree.

An AG Grid front end can send ``api.getFilterModel()`` (or ``api.getAdvancedFilterModel()``)
unchanged. The translation reproduces AG Grid's default client-side behaviour, so a server-side
blotter shows what the grid itself would show:

- Column model: ``{colId: model, ...}``; columns are ANDed. A model is a simple condition
  (``filterType`` text/number/bigint/date/dateString plus ``type``), a combined one (``operator``
  AND/OR over ``conditions``, or the older ``condition1``/``condition2``), a ``set`` filter
  (``values``; a null entry selects blanks) or a ``multi`` filter (``filterModels``, ANDed).
- Advanced model: ``{"filterType": "join", "type": "AND"|"OR", "conditions": [...]}`` nesting
  ``{"filterType": ..., "colId": ..., "type": ..., "filter": ...}`` conditions.
- Text conditions are case-insensitive, as in AG Grid. On an Enum field they are expanded at
  compile time to ``in`` over the matching symbols (``contains "fill"`` on status becomes
  ``in [FILLED, PARTIALLY_FILLED]``), which keeps them exact and indexable.
- Nulls: text ``notEqual``/``notContains`` match null (AG Grid's text filter does); number and
  date ``notEqual`` do not (AG Grid's ``includeBlanksInNotEqual`` defaults to false).
  ``blank`` is null, or null-or-empty for a String field; ``notBlank`` its complement.
- Booleans arrive as the strings ``"true"``/``"false"`` in set and text filters, and as
  ``{"filterType": "boolean", "type": "true"|"false"}`` in the advanced model.
- ``inRange`` excludes both ends (AG Grid's ``inRangeInclusive`` defaults to false).
- Date conditions name calendar days (AG Grid sends ``"YYYY-MM-DD 00:00:00"``; another time of
  day is refused). On a Timestamp field a day is the UTC day: ``equals D`` is
  ``D <= t < D+1``, ``greaterThan D`` is ``t >= D+1``, ``lessThan D`` is ``t < D``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from app.domain.fields import FieldSpec, ObjectTypeSpec
from app.domain.filter_errors import FilterLimits, NodeBudget, child_path, echo, invalid
from app.domain.filter_tree import (
    AND,
    MATCH_ALL,
    NOT,
    OR,
    Group,
    Node,
    filterable_field,
    make_leaf,
    typed_leaf,
)
from app.domain.filter_values import coerce_value

# Tuples, not sets: a client's filterType may be any JSON value, and a list is unhashable.
_TEXT_KINDS = ("text",)
_NUMBER_KINDS = ("number", "bigint")
_DATE_KINDS = ("date", "dateString")
_DIRECT_SCALAR = {
    "equals": "equals",
    "lessThan": "lessThan",
    "lessThanOrEqual": "lessThanOrEqual",
    "greaterThan": "greaterThan",
    "greaterThanOrEqual": "greaterThanOrEqual",
}
_TEXT_OPERATORS = {
    "equals": ("equals", False),
    "notEqual": ("notEquals", False),
    "contains": ("contains", False),
    "notContains": ("contains", True),
    "startsWith": ("startsWith", False),
    "endsWith": ("endsWith", False),
}
_ENUM_MATCHERS = {
    "equals": str.__eq__,
    "notEqual": str.__eq__,
    "contains": lambda symbol, text: text in symbol,
    "notContains": lambda symbol, text: text in symbol,
    "startsWith": str.startswith,
    "endsWith": str.endswith,
}
_AG_DAY = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[ T]00:00(?::00(?:\.0+)?)?)?")
_ONE_DAY = dt.timedelta(days=1)
# The filter AG Grid picks for a column when a model omits filterType.
_DEFAULT_KIND = {
    "Timestamp": "date",
    "Date": "date",
    "Boolean": "text",
    "String": "text",
    "Enum": "text",
}


def is_advanced_model(raw: dict[Any, Any]) -> bool:
    """An advanced filter model has a string ``filterType`` at its root; a column model never
    does (its values are per-column objects)."""
    return isinstance(raw.get("filterType"), str)


def parse_aggrid(raw: dict[Any, Any], object_type: ObjectTypeSpec, limits: FilterLimits) -> Node:
    """The predicate tree of an AG Grid column or advanced filter model."""
    translator = _Translator(object_type, NodeBudget(limits))
    if is_advanced_model(raw):
        return translator.advanced(raw, depth=1, path="")
    return translator.column_model(raw)


class _Translator:
    __slots__ = ("budget", "limits", "object_type")

    def __init__(self, object_type: ObjectTypeSpec, budget: NodeBudget) -> None:
        self.object_type = object_type
        self.budget = budget
        self.limits = budget.limits

    # -- structure ------------------------------------------------------------------------------

    def column_model(self, raw: dict[Any, Any]) -> Node:
        self.budget.spend("")
        children = []
        for col_id, model in raw.items():
            path = col_id if isinstance(col_id, str) else "?"
            field = filterable_field(self.object_type, col_id, path)
            children.append(self.column_filter(field, model, path, in_multi=False))
        return Group(AND, tuple(children))

    def column_filter(self, field: FieldSpec, model: Any, path: str, *, in_multi: bool) -> Node:
        if not isinstance(model, dict):
            raise invalid(f"a column filter model must be an object, got {echo(model)}", path)
        kind = model.get("filterType", _DEFAULT_KIND.get(field.data_type, "number"))
        if kind == "set":
            return self.set_filter(field, model, path)
        if kind == "multi" and not in_multi:
            return self.multi_filter(field, model, path)
        if "conditions" in model or "condition1" in model:
            return self.combined(field, kind, model, path)
        return self.condition(field, kind, model, path)

    def multi_filter(self, field: FieldSpec, model: dict[Any, Any], path: str) -> Node:
        models_path = child_path(path, "filterModels")
        models = model.get("filterModels")
        if not isinstance(models, list):
            raise invalid("filterModels must be a list", models_path)
        self.budget.spend(path)
        return Group(
            AND,
            tuple(
                self.column_filter(field, item, child_path(models_path, index), in_multi=True)
                for index, item in enumerate(models)
                if item is not None
            ),
        )

    def combined(self, field: FieldSpec, kind: Any, model: dict[Any, Any], path: str) -> Node:
        operator = model.get("operator", AND)
        if operator not in (AND, OR):
            raise invalid(
                f"operator must be AND or OR, got {echo(operator)}", child_path(path, "operator")
            )
        if "conditions" in model:
            conditions_path = child_path(path, "conditions")
            conditions = model["conditions"]
            if not isinstance(conditions, list):
                raise invalid("conditions must be a list", conditions_path)
            items = [(child_path(conditions_path, i), c) for i, c in enumerate(conditions)]
        else:
            items = [
                (child_path(path, key), model[key])
                for key in ("condition1", "condition2")
                if model.get(key) is not None
            ]
        self.budget.spend(path)
        children = []
        for item_path, item in items:
            if not isinstance(item, dict):
                raise invalid(f"a condition must be an object, got {echo(item)}", item_path)
            children.append(self.condition(field, item.get("filterType", kind), item, item_path))
        return Group(operator, tuple(children))

    def advanced(self, raw: Any, depth: int, path: str) -> Node:
        self.budget.check_depth(depth, path)
        if not isinstance(raw, dict):
            raise invalid(f"an advanced filter node must be an object, got {echo(raw)}", path)
        if raw.get("filterType") != "join":
            field = filterable_field(self.object_type, raw.get("colId"), child_path(path, "colId"))
            return self.condition(field, raw.get("filterType"), raw, path, advanced=True)
        logical = raw.get("type")
        if logical not in (AND, OR):
            raise invalid(
                f"a join type must be AND or OR, got {echo(logical)}", child_path(path, "type")
            )
        conditions_path = child_path(path, "conditions")
        conditions = raw.get("conditions")
        if not isinstance(conditions, list):
            raise invalid("conditions must be a list", conditions_path)
        self.budget.spend(path)
        return Group(
            logical,
            tuple(
                self.advanced(item, depth + 1, child_path(conditions_path, index))
                for index, item in enumerate(conditions)
            ),
        )

    # -- conditions -----------------------------------------------------------------------------

    def condition(
        self, field: FieldSpec, kind: Any, model: dict[Any, Any], path: str, advanced: bool = False
    ) -> Node:
        if kind == "boolean" and advanced:
            return self.boolean_condition(field, model.get("type"), path)
        if kind not in _TEXT_KINDS + _NUMBER_KINDS + _DATE_KINDS:
            raise invalid(f"unsupported filterType {echo(kind)}", child_path(path, "filterType"))
        kind_type = model.get("type")
        if not isinstance(kind_type, str):
            raise invalid(
                f"a condition needs a type, got {echo(kind_type)}", child_path(path, "type")
            )
        if kind_type == "empty":  # AG Grid's "no condition chosen"
            return self.node(MATCH_ALL, path)
        if kind_type in ("blank", "notBlank"):
            return self.blank(field, kind_type == "blank", kind in _TEXT_KINDS, path)
        if kind in _TEXT_KINDS:
            return self.text_condition(field, kind_type, model, path)
        if kind in _NUMBER_KINDS:
            return self.scalar_condition(field, kind_type, self.number_values(model, path), path)
        keys = ("filter", "filterTo") if advanced else ("dateFrom", "dateTo")
        return self.date_condition(field, kind_type, model, keys, path)

    def boolean_condition(self, field: FieldSpec, kind_type: Any, path: str) -> Node:
        if kind_type not in ("true", "false"):
            raise invalid(f"a boolean condition is true or false, got {echo(kind_type)}", path)
        return self.leaf(field, "equals", kind_type == "true", path)

    def blank(self, field: FieldSpec, blank: bool, text: bool, path: str) -> Node:
        if not (text and field.data_type == "String"):
            return self.typed(field, "isNull" if blank else "isNotNull", None, path)
        if blank:
            return self.any_of(
                path, self.typed(field, "isNull", None, path), self.leaf(field, "equals", "", path)
            )
        return self.all_of(
            path,
            self.typed(field, "isNotNull", None, path),
            self.leaf(field, "notEquals", "", path),
        )

    def text_condition(
        self, field: FieldSpec, kind_type: str, model: dict[Any, Any], path: str
    ) -> Node:
        mapping = _TEXT_OPERATORS.get(kind_type)
        if mapping is None:
            raise invalid(
                f"unsupported text filter type {echo(kind_type)}", child_path(path, "type")
            )
        operator, negate = mapping
        value_path = child_path(path, "filter")
        raw = model.get("filter")
        if field.data_type == "Enum":
            # The symbols matching the text; "not" types take the complement.
            node = self.enum_text(field, kind_type, raw, value_path)
            negate = kind_type in ("notEqual", "notContains")
        else:
            node = self.leaf(
                field,
                operator,
                raw,
                value_path,
                ignore_case=field.data_type == "String",
                operator_path=child_path(path, "type"),
            )
        if negate:
            return self.node(Group(NOT, (node,)), path)
        return node

    def enum_text(self, field: FieldSpec, kind_type: str, raw: Any, path: str) -> Node:
        if not isinstance(raw, str) or len(raw) > self.limits.max_string_length:
            raise invalid(f"a text filter needs a string, got {echo(raw)}", path)
        text = raw.lower()
        matches = _ENUM_MATCHERS[kind_type]
        symbols = [symbol for symbol in field.values or () if matches(symbol.lower(), text)]
        return self.typed(field, "in", symbols, path)

    def number_values(self, model: dict[Any, Any], path: str) -> tuple[Any, Any]:
        return (
            _Raw(model.get("filter"), child_path(path, "filter")),
            _Raw(model.get("filterTo"), child_path(path, "filterTo")),
        )

    def scalar_condition(
        self, field: FieldSpec, kind_type: str, values: tuple[Any, Any], path: str
    ) -> Node:
        low, high = values
        _check_scalar_type(kind_type, path)
        if kind_type in _DIRECT_SCALAR:
            return self.leaf_of(field, _DIRECT_SCALAR[kind_type], low, path)
        if kind_type == "notEqual":
            return self.all_of(
                path,
                self.typed(field, "isNotNull", None, path),
                self.leaf_of(field, "notEquals", low, path),
            )
        if kind_type == "inRange":
            return self.all_of(
                path,
                self.leaf_of(field, "greaterThan", low, path),
                self.leaf_of(field, "lessThan", high, path),
            )
        raise AssertionError(kind_type)  # pragma: no cover - _check_scalar_type let it through

    def date_condition(
        self,
        field: FieldSpec,
        kind_type: str,
        model: dict[Any, Any],
        keys: tuple[str, str],
        path: str,
    ) -> Node:
        if field.data_type not in ("Date", "Timestamp"):
            raise invalid(f"a date filter needs a Date or Timestamp field, not {field.name}", path)
        _check_scalar_type(kind_type, path)
        low_path, high_path = child_path(path, keys[0]), child_path(path, keys[1])
        low = _ag_day(model.get(keys[0]), low_path)
        high = _ag_day(model.get(keys[1]), high_path) if kind_type == "inRange" else None
        if field.data_type == "Date":
            return self.scalar_condition(field, kind_type, (low, high), path)
        return self.day_condition(field, kind_type, low, high, path)

    def day_condition(
        self, field: FieldSpec, kind_type: str, low: dt.date, high: dt.date | None, path: str
    ) -> Node:
        """A Timestamp compared with UTC calendar days (see the module doc)."""
        start = dt.datetime(low.year, low.month, low.day, tzinfo=dt.UTC)
        try:
            after = start + _ONE_DAY
        except OverflowError:
            raise invalid("date out of range", path) from None

        def at(operator: str, when: dt.datetime) -> Node:
            return self.typed(field, operator, when, path)

        if kind_type == "equals":
            return self.all_of(path, at("greaterThanOrEqual", start), at("lessThan", after))
        if kind_type == "notEqual":
            return self.any_of(path, at("lessThan", start), at("greaterThanOrEqual", after))
        if kind_type in ("lessThan", "greaterThanOrEqual"):
            return at(kind_type, start)
        if kind_type == "lessThanOrEqual":
            return at("lessThan", after)
        if kind_type == "greaterThan":
            return at("greaterThanOrEqual", after)
        assert kind_type == "inRange" and high is not None
        end = dt.datetime(high.year, high.month, high.day, tzinfo=dt.UTC)
        return self.all_of(path, at("greaterThanOrEqual", after), at("lessThan", end))

    # -- node builders (every node spends from the budget) -------------------------------------

    def node(self, node: Node, path: str) -> Node:
        self.budget.spend(path)
        return node

    def all_of(self, path: str, *children: Node) -> Node:
        """An AND of children that were counted when built."""
        return self.node(Group(AND, children), path)

    def any_of(self, path: str, *children: Node) -> Node:
        """An OR of children that were counted when built."""
        return self.node(Group(OR, children), path)

    def leaf(
        self,
        field: FieldSpec,
        operator: str,
        raw: Any,
        value_path: str,
        *,
        ignore_case: bool = False,
        operator_path: str | None = None,
    ) -> Node:
        """A counted leaf from a raw JSON value, validated like a native leaf."""
        if field.data_type == "Boolean":
            raw = _boolean_text(raw)
        leaf = make_leaf(
            field,
            operator,
            raw,
            self.limits,
            value_path=value_path,
            operator_path=operator_path or value_path,
            ignore_case=ignore_case,
        )
        return self.node(leaf, value_path)

    def typed(self, field: FieldSpec, operator: str, value: Any, path: str) -> Node:
        """A counted leaf from an already computed value."""
        return self.node(typed_leaf(field, operator, value, path), path)

    def leaf_of(self, field: FieldSpec, operator: str, value: Any, path: str) -> Node:
        """A counted leaf from a raw number-filter value or an already parsed date."""
        if isinstance(value, _Raw):
            return self.leaf(
                field, operator, value.raw, value.path, operator_path=child_path(path, "type")
            )
        return self.typed(field, operator, value, path)

    def set_filter(self, field: FieldSpec, model: dict[Any, Any], path: str) -> Node:
        values_path = child_path(path, "values")
        raw_values = model.get("values")
        if not isinstance(raw_values, list):
            raise invalid("a set filter needs a list of values", values_path)
        if len(raw_values) > self.limits.max_in_values:
            raise invalid(
                f"a set filter may hold at most {self.limits.max_in_values} values", values_path
            )
        with_blanks = False
        values = []
        for index, item in enumerate(raw_values):
            if item is None:
                with_blanks = True
                continue
            if field.data_type == "Boolean":
                item = _boolean_text(item)
            values.append(coerce_value(field, item, child_path(values_path, index), self.limits))
        in_leaf = self.typed(field, "in", values, path)
        if not with_blanks:
            return in_leaf
        return self.any_of(path, in_leaf, self.typed(field, "isNull", None, path))


def _check_scalar_type(kind_type: str, path: str) -> None:
    if kind_type not in _DIRECT_SCALAR and kind_type not in ("notEqual", "inRange"):
        raise invalid(f"unsupported filter type {echo(kind_type)}", child_path(path, "type"))


def _boolean_text(raw: Any) -> Any:
    """AG Grid set and text filters carry booleans as the strings "true"/"false"."""
    if isinstance(raw, str) and raw in ("true", "false"):
        return raw == "true"
    return raw


class _Raw:
    """A number-filter value still in JSON form, with the path to report it under."""

    __slots__ = ("path", "raw")

    def __init__(self, raw: Any, path: str) -> None:
        self.raw = raw
        self.path = path


def _ag_day(raw: Any, path: str) -> dt.date:
    match = _AG_DAY.fullmatch(raw) if isinstance(raw, str) else None
    if match is not None:
        try:
            return dt.date.fromisoformat(match.group(1))
        except ValueError:
            pass
    raise invalid(
        f"expected a date as 'YYYY-MM-DD' or 'YYYY-MM-DD 00:00:00', got {echo(raw)}", path
    )
