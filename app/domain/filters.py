"""Blotter subscription filters: validate once, compile once, evaluate per row cheaply.

Two input grammars produce the same predicate tree (see :mod:`app.domain.filter_tree` for the
semantics and the operator/type table):

- the native grammar of SPEC section 6 (:mod:`app.domain.filter_native`);
- AG Grid column and advanced filter models (:mod:`app.domain.filter_aggrid`).

``compile_filter`` returns a :class:`CompiledFilter` whose ``predicate`` is a closure tree,
whose ``spec`` is the normalized filter in the native grammar (log it, compare it, deduplicate
subscriptions by it) and whose ``equality_constraints()`` let the fan-out index subscriptions by
key fields. Every invalid input raises :class:`FilterError`, never anything else.
"""

from __future__ import annotations

import json
from collections.abc import Set
from typing import Any, Literal

from app.domain.fields import ObjectTypeSpec
from app.domain.filter_aggrid import is_advanced_model, parse_aggrid
from app.domain.filter_errors import (
    INVALID_FILTER,
    UNKNOWN_FIELD,
    FilterError,
    FilterLimits,
    echo,
    invalid,
)
from app.domain.filter_native import parse_native
from app.domain.filter_predicates import Predicate, Row, compile_predicate
from app.domain.filter_tree import (
    AND,
    MATCH_ALL,
    Group,
    Leaf,
    Node,
    equality_constraints,
    normalize,
    to_spec,
)

__all__ = [
    "DEFAULT_LIMITS",
    "INVALID_FILTER",
    "UNKNOWN_FIELD",
    "CompiledFilter",
    "FilterError",
    "FilterLimits",
    "Grammar",
    "Predicate",
    "Row",
    "compile_filter",
    "detect_grammar",
    "match_all",
    "restrict_to_accounts",
]

DEFAULT_LIMITS = FilterLimits()
Grammar = Literal["auto", "native", "aggrid"]


class CompiledFilter:
    """A validated filter for one object type, ready to evaluate.

    Equal (and hashing equally) when the object type and the normalized spec are equal, so the
    blotter can share one evaluation among subscriptions with the same filter.
    """

    __slots__ = ("_constraints", "_tree", "object_type", "predicate", "spec_json")

    def __init__(self, object_type: ObjectTypeSpec, tree: Node) -> None:
        self.object_type = object_type
        self._tree = normalize(tree)
        self.predicate: Predicate = compile_predicate(self._tree)
        self.spec_json = json.dumps(
            to_spec(self._tree), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        self._constraints = equality_constraints(self._tree)

    @property
    def spec(self) -> dict[str, Any]:
        """The normalized filter in the native grammar (a fresh copy each time)."""
        loaded: dict[str, Any] = json.loads(self.spec_json)
        return loaded

    @property
    def matches_all(self) -> bool:
        """True when the filter selects every row (no filter, or an empty AND)."""
        return self._tree == MATCH_ALL

    def equality_constraints(self) -> dict[str, frozenset[Any]]:
        """Field -> the values it must equal (one of) for a row to match.

        Sound, not complete: a matching row always satisfies every constraint, but a row that
        satisfies them all may still fail the predicate. Values are typed like row values
        (Decimal, str, int, date, bool), so ``row[field] in constraint`` is the index test.
        """
        return dict(self._constraints)

    def __call__(self, row: Row) -> bool:
        return self.predicate(row)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompiledFilter):
            return NotImplemented
        return (self.object_type.name, self.spec_json) == (other.object_type.name, other.spec_json)

    def __hash__(self) -> int:
        return hash((self.object_type.name, self.spec_json))

    def __repr__(self) -> str:
        return f"CompiledFilter({self.object_type.name}, {self.spec_json})"


def detect_grammar(raw: dict[Any, Any]) -> Literal["native", "aggrid"]:
    """Which grammar a filter object is written in.

    Native nodes carry ``logicalOperator`` or ``fieldName``; an AG Grid advanced model carries a
    string ``filterType``; an AG Grid column model maps column ids to objects. Anything else is
    parsed as native, whose errors say what a node needs.
    """
    if "logicalOperator" in raw or "fieldName" in raw:
        return "native"
    if is_advanced_model(raw) or all(isinstance(model, dict) for model in raw.values()):
        return "aggrid"
    return "native"


def compile_filter(
    raw: Any,
    object_type: ObjectTypeSpec,
    limits: FilterLimits = DEFAULT_LIMITS,
    *,
    grammar: Grammar = "auto",
) -> CompiledFilter:
    """Validate ``raw`` (decoded JSON) against ``object_type`` and compile it.

    ``None`` and ``{}`` match every row. Raises :class:`FilterError` (code INVALID_FILTER or
    UNKNOWN_FIELD, with the path of the offending part) for anything the server will not run.
    """
    if raw is None or raw == {}:
        return CompiledFilter(object_type, MATCH_ALL)
    if not isinstance(raw, dict):
        raise invalid(f"a filter must be a JSON object, got {echo(raw)}", "")
    if grammar == "auto":
        grammar = detect_grammar(raw)
    if grammar == "native":
        tree = parse_native(raw, object_type, limits)
    elif grammar == "aggrid":
        tree = parse_aggrid(raw, object_type, limits)
    else:
        raise ValueError(f"unknown filter grammar {grammar!r}")
    return CompiledFilter(object_type, tree)


def match_all(object_type: ObjectTypeSpec) -> CompiledFilter:
    """The filter of a subscription that asked for no filter."""
    return CompiledFilter(object_type, MATCH_ALL)


def restrict_to_accounts(
    compiled: CompiledFilter,
    accounts: Set[str] | None,
    account_field: str = "account",
) -> CompiledFilter:
    """``compiled`` ANDed with "the row's account is one of ``accounts``".

    ``None`` means the caller is entitled to every account (a ``*`` claim) and returns
    ``compiled`` unchanged; an empty set matches nothing. The entitlement is not subject to the
    client-facing size limits. The account field becomes an equality constraint, so the fan-out
    index keeps a caller's subscriptions away from other accounts' rows.

    Raises ValueError (a server configuration error, not a client one) when the object type has
    no String ``account_field`` or an account is not a string: entitlements must fail closed.
    """
    if accounts is None:
        return compiled
    field = compiled.object_type.get_field(account_field)
    if field is None or field.data_type != "String":
        raise ValueError(
            f"{compiled.object_type.name} has no String field {account_field!r} to restrict by"
        )
    if not all(isinstance(account, str) for account in accounts):
        raise ValueError("accounts must be strings")
    entitlement = Leaf(account_field, "in", tuple(sorted(set(accounts))))
    return CompiledFilter(compiled.object_type, Group(AND, (entitlement, compiled._tree)))
