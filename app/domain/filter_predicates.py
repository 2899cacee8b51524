"""Compile a predicate tree into nested closures: one Python call per node, no eval.

The blotter evaluates every change against many subscriptions, so the per-row path is kept
minimal: each leaf is a specialised closure with its field name and target bound, AND/OR of two
or three children are unrolled, and cheap leaves run before expensive ones. A row value of an
unexpected type (which a correctly typed row never has) makes its leaf false rather than
raising inside the fan-out loop; ``try`` costs nothing on Python 3.11+ when nothing is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.domain.filter_tree import AND, NOT, Leaf, Node

Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]

# What a mistyped row value can raise when compared: TypeError (str < int, naive vs aware
# datetime), ArithmeticError (Decimal NaN ordering), AttributeError (.lower() on a non-string).
_ROW_VALUE_ERRORS = (TypeError, ArithmeticError, AttributeError)
# Evaluation order inside AND/OR: hash/identity checks first, text scans and subtrees last.
_COST = {
    "isNull": 0,
    "isNotNull": 0,
    "equals": 1,
    "notEquals": 1,
    "in": 1,
    "greaterThan": 2,
    "greaterThanOrEqual": 2,
    "lessThan": 2,
    "lessThanOrEqual": 2,
    "startsWith": 3,
    "endsWith": 3,
    "contains": 4,
}
_GROUP_COST = 10


def compile_predicate(node: Node) -> Predicate:
    """The row predicate of ``node`` (normalized or not)."""
    if isinstance(node, Leaf):
        return _leaf(node)
    if node.logical == NOT:
        inner = compile_predicate(node.children[0])
        return lambda row: not inner(row)
    ordered = sorted(node.children, key=_cost)
    parts = [compile_predicate(child) for child in ordered]
    return _all(parts) if node.logical == AND else _any(parts)


def _cost(node: Node) -> int:
    cost = _COST[node.operator] if isinstance(node, Leaf) else _GROUP_COST
    return cost + (1 if isinstance(node, Leaf) and node.ignore_case else 0)


def _always(row: Row) -> bool:
    return True


def _never(row: Row) -> bool:
    return False


def _all(parts: list[Predicate]) -> Predicate:
    if not parts:
        return _always
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda row: a(row) and b(row)
    if len(parts) == 3:
        a, b, c = parts
        return lambda row: a(row) and b(row) and c(row)
    everything = tuple(parts)

    def all_of(row: Row) -> bool:
        for part in everything:  # noqa: SIM110 - all() over a generator is slower per row
            if not part(row):
                return False
        return True

    return all_of


def _any(parts: list[Predicate]) -> Predicate:
    if not parts:
        return _never
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda row: a(row) or b(row)
    if len(parts) == 3:
        a, b, c = parts
        return lambda row: a(row) or b(row) or c(row)
    anything = tuple(parts)

    def any_of(row: Row) -> bool:
        for part in anything:  # noqa: SIM110 - any() over a generator is slower per row
            if part(row):
                return True
        return False

    return any_of


def _leaf(leaf: Leaf) -> Predicate:
    if leaf.operator == "isNull":
        return _is_null(leaf.field)
    if leaf.operator == "isNotNull":
        return _is_not_null(leaf.field)
    if leaf.ignore_case:
        return _FOLDED[leaf.operator](leaf.field, _target(leaf))
    return _EXACT[leaf.operator](leaf.field, _target(leaf))


def _target(leaf: Leaf) -> Any:
    return frozenset(leaf.value) if leaf.operator == "in" else leaf.value


def _is_null(name: str) -> Predicate:
    return lambda row: row.get(name) is None


def _is_not_null(name: str) -> Predicate:
    return lambda row: row.get(name) is not None


def _equals(name: str, target: Any) -> Predicate:
    # target is never None, so a null row value compares unequal without a separate check.
    def equals(row: Row) -> bool:
        try:
            return row.get(name) == target
        except _ROW_VALUE_ERRORS:
            return False

    return equals


def _not_equals(name: str, target: Any) -> Predicate:
    def not_equals(row: Row) -> bool:
        try:
            return row.get(name) != target
        except _ROW_VALUE_ERRORS:
            return True  # the negation of equals, which is false here

    return not_equals


def _member(name: str, targets: frozenset[Any]) -> Predicate:
    def member(row: Row) -> bool:
        try:
            return row.get(name) in targets
        except _ROW_VALUE_ERRORS:
            return False

    return member


def _greater(name: str, target: Any) -> Predicate:
    def greater(row: Row) -> bool:
        value = row.get(name)
        if value is None:
            return False
        try:
            return value > target
        except _ROW_VALUE_ERRORS:
            return False

    return greater


def _greater_or_equal(name: str, target: Any) -> Predicate:
    def greater_or_equal(row: Row) -> bool:
        value = row.get(name)
        if value is None:
            return False
        try:
            return value >= target
        except _ROW_VALUE_ERRORS:
            return False

    return greater_or_equal


def _less(name: str, target: Any) -> Predicate:
    def less(row: Row) -> bool:
        value = row.get(name)
        if value is None:
            return False
        try:
            return value < target
        except _ROW_VALUE_ERRORS:
            return False

    return less


def _less_or_equal(name: str, target: Any) -> Predicate:
    def less_or_equal(row: Row) -> bool:
        value = row.get(name)
        if value is None:
            return False
        try:
            return value <= target
        except _ROW_VALUE_ERRORS:
            return False

    return less_or_equal


def _contains(name: str, target: str) -> Predicate:
    def contains(row: Row) -> bool:
        value = row.get(name)
        return isinstance(value, str) and target in value

    return contains


def _starts_with(name: str, target: str) -> Predicate:
    def starts_with(row: Row) -> bool:
        value = row.get(name)
        return isinstance(value, str) and value.startswith(target)

    return starts_with


def _ends_with(name: str, target: str) -> Predicate:
    def ends_with(row: Row) -> bool:
        value = row.get(name)
        return isinstance(value, str) and value.endswith(target)

    return ends_with


def _folded(test: Callable[[str, Any], bool], negate: bool = False) -> Callable[..., Predicate]:
    """Case-insensitive variant: the target was lower-cased at compile time, the row value is
    lower-cased here. A null value fails every test (and so passes the negated one)."""

    def factory(name: str, target: Any) -> Predicate:
        def folded(row: Row) -> bool:
            value = row.get(name)
            if not isinstance(value, str):
                return negate
            return test(value.lower(), target) != negate

        return folded

    return factory


_EXACT: dict[str, Callable[[str, Any], Predicate]] = {
    "equals": _equals,
    "notEquals": _not_equals,
    "in": _member,
    "greaterThan": _greater,
    "greaterThanOrEqual": _greater_or_equal,
    "lessThan": _less,
    "lessThanOrEqual": _less_or_equal,
    "contains": _contains,
    "startsWith": _starts_with,
    "endsWith": _ends_with,
}
_FOLDED: dict[str, Callable[[str, Any], Predicate]] = {
    "equals": _folded(lambda value, target: value == target),
    "notEquals": _folded(lambda value, target: value == target, negate=True),
    "in": _folded(lambda value, targets: value in targets),
    "contains": _folded(lambda value, target: target in value),
    "startsWith": _folded(str.startswith),
    "endsWith": _folded(str.endswith),
}
