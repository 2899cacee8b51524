"""The native filter grammar of the WebSocket protocol (SPEC section 6).

A node is either a group ``{"logicalOperator": "AND"|"OR"|"NOT", "filters": [...]}`` or a leaf
``{"fieldName": ..., "operator": ..., "value": ...}`` (optionally ``"ignoreCase": true`` on a
String field). Unknown keys are refused rather than ignored: a misspelt ``"operater"`` must not
silently widen what a trader sees. ``NOT`` takes exactly one filter; NOT of several is refused
because clients disagree on whether it would mean NOT-AND or NOT-OR.
"""

from __future__ import annotations

from typing import Any

from app.domain.fields import ObjectTypeSpec
from app.domain.filter_errors import FilterLimits, NodeBudget, child_path, echo, invalid
from app.domain.filter_tree import (
    LOGICAL_OPERATORS,
    NOT,
    Group,
    Node,
    filterable_field,
    make_leaf,
)

_GROUP_KEYS = frozenset(("logicalOperator", "filters"))
_LEAF_KEYS = frozenset(("fieldName", "operator", "value", "ignoreCase"))


def parse_native(raw: Any, object_type: ObjectTypeSpec, limits: FilterLimits) -> Node:
    """The predicate tree of a native-grammar filter; FilterError for anything invalid."""
    return _node(raw, object_type, NodeBudget(limits), depth=1, path="")


def _node(raw: Any, object_type: ObjectTypeSpec, budget: NodeBudget, depth: int, path: str) -> Node:
    budget.check_depth(depth, path)
    budget.spend(path)
    if not isinstance(raw, dict):
        raise invalid(f"a filter node must be an object, got {echo(raw)}", path)
    if "logicalOperator" in raw:
        return _group(raw, object_type, budget, depth, path)
    if "fieldName" in raw:
        return _leaf(raw, object_type, budget.limits, path)
    raise invalid("a filter node needs logicalOperator (a group) or fieldName (a leaf)", path)


def _group(
    raw: dict[Any, Any], object_type: ObjectTypeSpec, budget: NodeBudget, depth: int, path: str
) -> Node:
    _refuse_unknown_keys(raw, _GROUP_KEYS, path)
    logical = raw["logicalOperator"]
    if logical not in LOGICAL_OPERATORS:
        raise invalid(
            f"logicalOperator must be AND, OR or NOT, got {echo(logical)}",
            child_path(path, "logicalOperator"),
        )
    filters = raw.get("filters")
    filters_path = child_path(path, "filters")
    if not isinstance(filters, list):
        raise invalid("filters must be a list", filters_path)
    if logical == NOT and len(filters) != 1:
        raise invalid("NOT takes exactly one filter", filters_path)
    children = tuple(
        _node(child, object_type, budget, depth + 1, child_path(filters_path, index))
        for index, child in enumerate(filters)
    )
    return Group(logical, children)


def _leaf(
    raw: dict[Any, Any], object_type: ObjectTypeSpec, limits: FilterLimits, path: str
) -> Node:
    _refuse_unknown_keys(raw, _LEAF_KEYS, path)
    field = filterable_field(object_type, raw["fieldName"], child_path(path, "fieldName"))
    operator_path = child_path(path, "operator")
    operator = raw.get("operator")
    if not isinstance(operator, str):
        raise invalid(f"operator must be a string, got {echo(operator)}", operator_path)
    ignore_case = raw.get("ignoreCase", False)
    if not isinstance(ignore_case, bool):
        raise invalid("ignoreCase must be true or false", child_path(path, "ignoreCase"))
    return make_leaf(
        field,
        operator,
        raw.get("value"),
        limits,
        value_path=child_path(path, "value"),
        operator_path=operator_path,
        ignore_case=ignore_case,
        ignore_case_path=child_path(path, "ignoreCase"),
    )


def _refuse_unknown_keys(raw: dict[Any, Any], allowed: frozenset[str], path: str) -> None:
    for key in raw:
        if key not in allowed:
            raise invalid(
                f"unexpected key {echo(key)}",
                child_path(path, key if isinstance(key, str) else "?"),
            )
