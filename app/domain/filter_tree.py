"""The predicate tree both filter grammars translate into, and what is derived from it.

Semantics (two-valued logic, so that ``NOT`` is plain negation and a client can reason about
complements):

- A null (None or absent) row value makes every comparison false: equals, the ordering
  operators, contains/startsWith/endsWith and in. ``notEquals`` is the exact negation of
  ``equals``, so **a null value matches notEquals** (``status notEquals FILLED`` shows rows with
  no status). ``isNull``/``isNotNull`` test for null.
- ``NOT`` has exactly one child. ``AND`` of no children matches everything, ``OR`` of no
  children matches nothing.
- ``ignoreCase`` (String fields only) compares lower-cased text; AG Grid text filters use it.

Operators by data type (anything else is INVALID_FILTER):

=====================================================  ==========================================
equals, notEquals, isNull, isNotNull                    every type
greaterThan(OrEqual), lessThan(OrEqual)                 String, Integer, Long, Decimal, Timestamp,
                                                        Date (not Enum: symbol order means nothing)
contains, startsWith, endsWith                          String
in                                                      String, Enum, Integer, Long, Decimal, Date,
                                                        Boolean
=====================================================  ==========================================

``endsWith`` is an extension of the SPEC's operator list so that AG Grid's ``endsWith`` has a
native equivalent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.domain.fields import FieldSpec, ObjectTypeSpec
from app.domain.filter_errors import (
    UNKNOWN_FIELD,
    FilterError,
    FilterLimits,
    child_path,
    echo,
    invalid,
)
from app.domain.filter_values import canonical_json, coerce_value

AND, OR, NOT = "AND", "OR", "NOT"
LOGICAL_OPERATORS = (AND, OR, NOT)

_ALL_TYPES = frozenset(
    ("String", "Integer", "Long", "Decimal", "Boolean", "Timestamp", "Date", "Enum")
)
_ORDERED_TYPES = frozenset(("String", "Integer", "Long", "Decimal", "Timestamp", "Date"))
_TEXT_TYPES = frozenset(("String",))
_IN_TYPES = frozenset(("String", "Enum", "Integer", "Long", "Decimal", "Date", "Boolean"))

OPERATOR_TYPES: Mapping[str, frozenset[str]] = {
    "equals": _ALL_TYPES,
    "notEquals": _ALL_TYPES,
    "greaterThan": _ORDERED_TYPES,
    "greaterThanOrEqual": _ORDERED_TYPES,
    "lessThan": _ORDERED_TYPES,
    "lessThanOrEqual": _ORDERED_TYPES,
    "contains": _TEXT_TYPES,
    "startsWith": _TEXT_TYPES,
    "endsWith": _TEXT_TYPES,
    "in": _IN_TYPES,
    "isNull": _ALL_TYPES,
    "isNotNull": _ALL_TYPES,
}
NULL_OPERATORS = frozenset(("isNull", "isNotNull"))
IGNORE_CASE_OPERATORS = frozenset(
    ("equals", "notEquals", "contains", "startsWith", "endsWith", "in")
)
# NOT(x) that is exactly another leaf under two-valued logic (not true of the ordering operators:
# NOT(price > 5) matches a null price, price <= 5 does not).
_COMPLEMENT = {
    "equals": "notEquals",
    "notEquals": "equals",
    "isNull": "isNotNull",
    "isNotNull": "isNull",
}


@dataclass(frozen=True, slots=True)
class Leaf:
    """One comparison. ``value`` is coerced (lower-cased when ``ignore_case``); for ``in`` it is
    a sorted tuple without duplicates; for isNull/isNotNull it is None."""

    field: str
    operator: str
    value: Any = None
    ignore_case: bool = False


@dataclass(frozen=True, slots=True)
class Group:
    """AND/OR over any number of children, NOT over exactly one."""

    logical: str
    children: tuple[Node, ...]


Node = Leaf | Group
MATCH_ALL = Group(AND, ())


def filterable_field(object_type: ObjectTypeSpec, name: Any, path: str) -> FieldSpec:
    """The field a filter names, or the protocol error saying why it cannot be filtered on."""
    if not isinstance(name, str):
        raise invalid(f"a field name must be a string, got {echo(name)}", path)
    field = object_type.get_field(name)
    if field is None:
        raise FilterError(UNKNOWN_FIELD, f"{object_type.name} has no field {echo(name)}", path)
    if not field.filterable:
        raise invalid(f"{object_type.name}.{name} is not filterable", path)
    return field


def make_leaf(
    field: FieldSpec,
    operator: str,
    raw_value: Any,
    limits: FilterLimits,
    *,
    value_path: str,
    operator_path: str,
    ignore_case: bool = False,
    ignore_case_path: str | None = None,
) -> Leaf:
    """Validate operator and value against the field's type and build the leaf.

    Both grammars end here, so a filter means the same whichever grammar it came in.
    """
    allowed = OPERATOR_TYPES.get(operator)
    if allowed is None:
        raise invalid(f"unknown operator {echo(operator)}", operator_path)
    if field.data_type not in allowed:
        raise invalid(
            f"operator {operator} is not valid for {field.data_type} fields", operator_path
        )
    if ignore_case and (field.data_type != "String" or operator not in IGNORE_CASE_OPERATORS):
        operators = ", ".join(sorted(IGNORE_CASE_OPERATORS))
        raise invalid(
            f"ignoreCase applies only to String fields with {operators}",
            ignore_case_path or operator_path,
        )
    if operator in NULL_OPERATORS:
        return Leaf(field.name, operator)
    if raw_value is None:
        raise invalid(f"operator {operator} needs a value (use isNull for nulls)", value_path)
    if operator == "in":
        return Leaf(
            field.name,
            operator,
            _in_values(field, raw_value, limits, value_path, ignore_case),
            ignore_case,
        )
    value = coerce_value(field, raw_value, value_path, limits)
    return Leaf(field.name, operator, value.lower() if ignore_case else value, ignore_case)


def typed_leaf(field: FieldSpec, operator: str, value: Any, path: str) -> Leaf:
    """A leaf from an already-coerced value (or, for ``in``, values), checking the operator.

    For translations that compute values themselves (AG Grid day ranges, enum expansion).
    """
    if field.data_type not in OPERATOR_TYPES.get(operator, ()):
        raise invalid(f"operator {operator} is not valid for {field.data_type} fields", path)
    if operator == "in":
        return Leaf(field.name, operator, tuple(sorted(set(value))))
    return Leaf(field.name, operator, None if operator in NULL_OPERATORS else value)


def _in_values(
    field: FieldSpec,
    raw: Any,
    limits: FilterLimits,
    path: str,
    ignore_case: bool,
) -> tuple[Any, ...]:
    if not isinstance(raw, list):
        raise invalid("operator in needs a list of values", path)
    if len(raw) > limits.max_in_values:
        raise invalid(f"an in list may hold at most {limits.max_in_values} values", path)
    values = set()
    for index, item in enumerate(raw):
        item_path = child_path(path, index)
        if item is None:
            raise invalid("an in list cannot hold null (combine with isNull)", item_path)
        value = coerce_value(field, item, item_path, limits)
        values.add(value.lower() if ignore_case else value)
    return tuple(sorted(values))


def normalize(node: Node) -> Node:
    """An equivalent tree in canonical shape: nested AND/OR flattened, one-child AND/OR
    unwrapped, double negation removed, NOT of a complementable leaf replaced by the leaf."""
    if isinstance(node, Leaf):
        return node
    children = tuple(normalize(child) for child in node.children)
    if node.logical == NOT:
        (child,) = children
        if isinstance(child, Group) and child.logical == NOT:
            return child.children[0]
        if isinstance(child, Leaf) and child.operator in _COMPLEMENT:
            return Leaf(child.field, _COMPLEMENT[child.operator], child.value, child.ignore_case)
        return Group(NOT, children)
    flat: list[Node] = []
    for child in children:
        if isinstance(child, Group) and child.logical == node.logical:
            flat.extend(child.children)
        else:
            flat.append(child)
    if len(flat) == 1:
        return flat[0]
    return Group(node.logical, tuple(flat))


def to_spec(node: Node) -> dict[str, Any]:
    """The node in the native grammar, values rendered canonically (see :func:`canonical_json`)."""
    if isinstance(node, Group):
        return {"logicalOperator": node.logical, "filters": [to_spec(c) for c in node.children]}
    spec: dict[str, Any] = {"fieldName": node.field, "operator": node.operator}
    if node.operator == "in":
        spec["value"] = [canonical_json(v) for v in node.value]
    elif node.operator not in NULL_OPERATORS:
        spec["value"] = canonical_json(node.value)
    if node.ignore_case:
        spec["ignoreCase"] = True
    return spec


def equality_constraints(node: Node) -> dict[str, frozenset[Any]]:
    """Fields whose value must be in a known set for ``node`` to match.

    Sound by construction: an AND matches only if every child does, so child constraints
    intersect; an OR matches only if some child does, so a field constrained in every child is
    constrained to the union. NOT, case-insensitive leaves and other operators constrain nothing.
    A blotter indexes subscriptions by these to skip evaluating most of them.
    """
    if isinstance(node, Leaf):
        if node.ignore_case:
            return {}
        if node.operator == "equals":
            return {node.field: frozenset((node.value,))}
        if node.operator == "in":
            return {node.field: frozenset(node.value)}
        return {}
    if node.logical == AND:
        merged: dict[str, frozenset[Any]] = {}
        for child in node.children:
            for name, values in equality_constraints(child).items():
                merged[name] = merged[name] & values if name in merged else values
        return merged
    if node.logical == OR and node.children:
        per_child = [equality_constraints(child) for child in node.children]
        common = set(per_child[0]).intersection(*per_child[1:])
        return {name: frozenset().union(*(c[name] for c in per_child)) for name in common}
    return {}
