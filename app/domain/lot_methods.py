"""Which lot method relieves a trade: contract rules dated by effectiveFrom, plus a default.

The method is chosen per relieving trade, from that trade's effectiveDate, not from the time the
rule arrived. That is what makes a replay in economic order reproduce the same reliefs whatever
order rules and trades were received in.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from app.domain.trades import EPOCH_ORDINAL

FIFO = "FIFO"
LIFO = "LIFO"
HIFO = "HIFO"
LOT_METHODS = (FIFO, LIFO, HIFO)
DEFAULT_LOT_METHOD = FIFO


def check_lot_method(method: str) -> str:
    if method not in LOT_METHODS:
        raise ValueError(f"unknown lot method {method!r}; expected one of {', '.join(LOT_METHODS)}")
    return method


@dataclass(frozen=True, slots=True)
class LotMethodRule:
    """A contract rule: `method` relieves trades whose effectiveDate is on or after the date."""

    effective_from: date
    method: str
    sequence: int = 0  # the ContractRule event's sequence; decides between rules for one date


@dataclass(frozen=True, slots=True)
class LotMethodSchedule:
    """The default method plus dated rules, kept sorted by effective_from (one rule per date)."""

    default: str = DEFAULT_LOT_METHOD
    rules: tuple[LotMethodRule, ...] = ()
    _dates: tuple[date, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_lot_method(self.default)
        for rule in self.rules:
            check_lot_method(rule.method)
        dates = tuple(rule.effective_from for rule in self.rules)
        if list(dates) != sorted(set(dates)):
            raise ValueError("rules must be sorted by effective_from with one rule per date")
        object.__setattr__(self, "_dates", dates)

    def method_for(self, effective_date: date) -> str:
        """The method in force for a relieving trade with this effectiveDate."""
        if not self._dates:
            return self.default
        index = bisect_right(self._dates, effective_date)
        return self.rules[index - 1].method if index else self.default

    def with_rule(self, effective_from: date, method: str, sequence: int = 0) -> LotMethodSchedule:
        """A schedule that includes the rule; for the same date the higher (or equal, later)
        sequence wins, so redelivered or reordered ContractRule events converge."""
        check_lot_method(method)
        rules = {rule.effective_from: rule for rule in self.rules}
        existing = rules.get(effective_from)
        if existing is not None and existing.sequence > sequence:
            return self
        rules[effective_from] = LotMethodRule(effective_from, method, sequence)
        return LotMethodSchedule(self.default, tuple(rules[d] for d in sorted(rules)))

    def with_default(self, method: str) -> LotMethodSchedule:
        return LotMethodSchedule(check_lot_method(method), self.rules)

    def to_dict(self) -> dict[str, Any]:
        return {
            "default": self.default,
            "rules": [
                [r.effective_from.toordinal() - EPOCH_ORDINAL, r.method, r.sequence]
                for r in self.rules
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LotMethodSchedule:
        rules = tuple(
            LotMethodRule(date.fromordinal(EPOCH_ORDINAL + days), method, sequence)
            for days, method, sequence in data.get("rules", ())
        )
        return cls(data.get("default", DEFAULT_LOT_METHOD), rules)
