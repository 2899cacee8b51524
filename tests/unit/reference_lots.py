"""A deliberately naive tax-lot model, used only as an oracle by the tests.

It shares no code with app.domain: plain dicts and lists, Fractions instead of Decimals (so a
rounding slip in the engine cannot be mirrored here), and every relief step re-sorts all open lots
from scratch. Slow and obviously correct is the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction


@dataclass
class RefTrade:
    trade_id: str
    side: str  # "BUY" or "SELL"
    quantity: Fraction
    price: Fraction
    effective_date: date
    trade_time: int


@dataclass
class RefLot:
    lot_id: str
    effective_date: date
    trade_time: int
    quantity: Fraction  # signed
    cost: Fraction


@dataclass
class RefBook:
    default_method: str = "FIFO"
    rules: dict[date, str] = field(default_factory=dict)  # effective_from -> method
    lots: list[RefLot] = field(default_factory=list)
    realized: Fraction = Fraction(0)
    seen: set[str] = field(default_factory=set)

    @property
    def quantity(self) -> Fraction:
        return sum((lot.quantity for lot in self.lots), Fraction(0))

    def method_for(self, day: date) -> str:
        chosen_date = None
        method = self.default_method
        for rule_date, rule_method in self.rules.items():
            if rule_date <= day and (chosen_date is None or rule_date > chosen_date):
                chosen_date = rule_date
                method = rule_method
        return method

    def next_lot_to_relieve(self, method: str, sign: int) -> RefLot | None:
        candidates = [lot for lot in self.lots if lot.quantity * sign > 0]
        if not candidates:
            return None

        def age(lot: RefLot) -> tuple[date, int, str]:
            return (lot.effective_date, lot.trade_time, lot.lot_id)

        if method == "FIFO":
            return sorted(candidates, key=age)[0]
        if method == "LIFO":
            return sorted(candidates, key=age)[-1]
        if method == "HIFO":
            return sorted(candidates, key=lambda lot: (-lot.cost, age(lot)))[0]
        raise ValueError(method)

    def apply(self, trade: RefTrade) -> None:
        if trade.trade_id in self.seen:
            return
        self.seen.add(trade.trade_id)
        method = self.method_for(trade.effective_date)
        trade_sign = 1 if trade.side == "BUY" else -1
        remaining = trade.quantity
        while remaining > 0:
            lot = self.next_lot_to_relieve(method, -trade_sign)
            if lot is None:
                break
            take = min(remaining, abs(lot.quantity))
            if lot.quantity > 0:  # a long lot, relieved by a sell
                self.realized += (trade.price - lot.cost) * take
                lot.quantity -= take
            else:  # a short lot, covered by a buy
                self.realized += (lot.cost - trade.price) * take
                lot.quantity += take
            remaining -= take
            self.lots = [open_lot for open_lot in self.lots if open_lot.quantity != 0]
        if remaining > 0:
            self.lots.append(
                RefLot(
                    trade.trade_id,
                    trade.effective_date,
                    trade.trade_time,
                    remaining * trade_sign,
                    trade.price,
                )
            )
        self.lots.sort(key=lambda lot: (lot.effective_date, lot.trade_time, lot.lot_id))


def run_reference(
    trades: list[RefTrade], default_method: str = "FIFO", rules: dict[date, str] | None = None
) -> RefBook:
    """Apply trades in the order given (duplicates by id skipped)."""
    book = RefBook(default_method=default_method, rules=dict(rules or {}))
    for trade in trades:
        book.apply(trade)
    return book
