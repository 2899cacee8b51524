"""Positions with tax lots: relief by FIFO/LIFO/HIFO, shorts, P&L, idempotency, classification.

Plain Python with no framework or I/O so the hotpath agent, the coldpath replay and the tests run
exactly the same arithmetic. `apply_trade` mutates the position in place (copying 1,000 lots per
trade would cost more than the relief itself); callers that need the previous state keep the stored
state or call `Position.copy()` first. If `apply_trade` raises, discard the object and reload it.

Decimal arithmetic runs in `ENGINE_CONTEXT`: 200 digits with Inexact trapped. Trade validation
bounds every input to 41 significant digits, so no product or sum of a position can need rounding;
if one ever did, the engine raises instead of silently losing a cent.

Relief order (SPEC section 5), applied to long lots by a SELL and to short lots by a BUY:
- FIFO: oldest lot first, in economic order of the lot's opening trade;
- LIFO: newest lot first;
- HIFO: highest cost price first, ties oldest first. For short lots this is also "highest cost
  (sale price) first", i.e. the literal rule, not a tax-optimal mirror.
Excess quantity after all opposite lots are relieved opens a new lot on the trade's side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any, NamedTuple

from app.domain.decimals import decimal_str
from app.domain.lot_methods import (
    FIFO,
    LIFO,
    LotMethodSchedule,
    check_lot_method,
)
from app.domain.lots import Lot, LotBook
from app.domain.trade_ids import AppliedTradeIds
from app.domain.trades import BUY, EPOCH_ORDINAL, EconomicKey, TradeInput

ENGINE_CONTEXT = Context(
    prec=200,
    rounding=ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)

RECONCILED = "RECONCILED"
PROVISIONAL = "PROVISIONAL"

BACKDATED = "BACKDATED"
FORWARD_DATED = "FORWARD_DATED"
CURRENT_DATED = "CURRENT_DATED"

STATE_FORMAT = 1
ZERO = Decimal(0)


class Relief(NamedTuple):
    """One lot (partly) closed by a trade."""

    lot_id: str
    quantity: Decimal  # amount relieved, always > 0
    cost_price: Decimal
    realized_pnl: Decimal
    quantity_left: Decimal  # signed quantity still open in the lot (0 when closed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lotId": self.lot_id,
            "tradeId": self.lot_id,  # the lot's opening trade
            "quantity": decimal_str(self.quantity),
            "costPrice": decimal_str(self.cost_price),
            "realizedPnl": decimal_str(self.realized_pnl),
            "quantityLeft": decimal_str(self.quantity_left),
        }


class ApplyResult(NamedTuple):
    """What one trade did to a position: the content of TradeApplied."""

    trade_id: str
    duplicate: bool  # already applied: nothing changed
    backdated: bool  # sorted before the last applied trade: the position is now PROVISIONAL
    lot_method: str | None
    reliefs: tuple[Relief, ...]
    opened_lot: Lot | None
    realized_pnl: Decimal  # realized by this trade
    quantity_after: Decimal
    lot_count_after: int
    realized_after: Decimal
    version: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form; names follow the TradeApplied fields where they overlap."""
        opened = self.opened_lot
        return {
            "tradeId": self.trade_id,
            "duplicate": self.duplicate,
            "backdated": self.backdated,
            "lotMethod": self.lot_method,
            "lotsRelieved": [relief.to_dict() for relief in self.reliefs],
            "openedLotId": None if opened is None else opened.lot_id,
            "openedQuantity": None if opened is None else str(opened.quantity),
            "realizedPnl": decimal_str(self.realized_pnl),
            "quantityAfter": decimal_str(self.quantity_after),
            "lotCountAfter": self.lot_count_after,
            "realizedPnlAfter": decimal_str(self.realized_after),
            "version": self.version,
        }


def _key_to_json(key: EconomicKey | None) -> list[Any] | None:
    if key is None:
        return None
    return [key[0].toordinal() - EPOCH_ORDINAL, key[1], key[2]]


def _key_from_json(data: list[Any] | None) -> EconomicKey | None:
    if data is None:
        return None
    days, trade_time, trade_id = data
    return (date.fromordinal(EPOCH_ORDINAL + days), trade_time, trade_id)


class Position:
    """One account's holding of one symbol: open lots, quantity, realized P&L and bookkeeping.

    `cost_basis` (sum of cost x signed quantity over open lots) is maintained exactly on every
    relief so unrealized P&L is O(1) and does not need to decode the lots.
    """

    __slots__ = (
        "_applied",
        "_book",
        "account",
        "cost_basis",
        "last_key",
        "position_key",
        "quantity",
        "realized_pnl",
        "schedule",
        "status",
        "symbol",
        "version",
    )

    def __init__(
        self, account: str, symbol: str, schedule: LotMethodSchedule | None = None
    ) -> None:
        self.account = account
        self.symbol = symbol
        self.position_key = f"{account}:{symbol}"
        self.quantity = ZERO
        self.realized_pnl = ZERO
        self.cost_basis = ZERO
        self.schedule = schedule if schedule is not None else LotMethodSchedule()
        self.version = 0
        self.status = RECONCILED
        self.last_key: EconomicKey | None = None  # greatest economic key applied so far
        self._book = LotBook()
        self._applied = AppliedTradeIds()

    # Reading.

    @property
    def lots(self) -> tuple[Lot, ...]:
        """Open lots in economic order of their opening trades."""
        return tuple(self._book)

    @property
    def lot_count(self) -> int:
        return len(self._book)

    @property
    def lot_method(self) -> str:
        """Method in force at the latest applied trade's date (the default before any trade);
        use `schedule.method_for(day)` for another day."""
        if self.last_key is None:
            return self.schedule.default
        return self.schedule.method_for(self.last_key[0])

    @property
    def applied_trade_count(self) -> int:
        return len(self._applied)

    def applied_trade_ids(self) -> list[str]:
        """Every trade id applied, in the order they were applied."""
        return list(self._applied)

    def is_applied(self, trade_id: str) -> bool:
        return trade_id in self._applied

    def unrealized_pnl(self, price: Decimal | None) -> Decimal | None:
        """sum((price - cost) x signed quantity) over open lots; None without a price."""
        if price is None:
            return None
        with localcontext(ENGINE_CONTEXT):
            return price * self.quantity - self.cost_basis

    def exposure(self, price: Decimal | None) -> Decimal | None:
        """Signed market value (quantity x price); None without a price."""
        if price is None:
            return None
        with localcontext(ENGINE_CONTEXT):
            return self.quantity * price

    def rule_affects_applied_trades(self, effective_from: date) -> bool:
        """True when a contract rule dated effective_from changes the method for a trade already
        applied, so the position must be replayed to honour it."""
        return self.last_key is not None and self.last_key[0] >= effective_from

    def same_book_as(self, other: Position) -> bool:
        """Same economic content (lots, quantity, P&L, applied ids), ignoring version, status
        and the order ids were applied in."""
        return (
            self.position_key == other.position_key
            and self.quantity == other.quantity
            and self.realized_pnl == other.realized_pnl
            and self.cost_basis == other.cost_basis
            and self.lots == other.lots
            and set(self._applied) == set(other._applied)
        )

    def to_json(self, price: Decimal | None = None) -> dict[str, Any]:
        """REST/WebSocket view: camelCase, decimals as strings, P&L from the given price."""
        unrealized = self.unrealized_pnl(price)
        exposure = self.exposure(price)
        return {
            "positionKey": self.position_key,
            "account": self.account,
            "symbol": self.symbol,
            "quantity": decimal_str(self.quantity),
            "lots": [lot.to_json() for lot in self._book],
            "realizedPnl": decimal_str(self.realized_pnl),
            "unrealizedPnl": None if unrealized is None else decimal_str(unrealized),
            "exposure": None if exposure is None else decimal_str(exposure),
            "lastPrice": None if price is None else decimal_str(price),
            "lotMethod": self.lot_method,
            "version": self.version,
            "status": self.status,
        }

    # Storage.

    def to_state(self) -> dict[str, Any]:
        """JSON-compatible state for the position table (no event history: stored apart)."""
        return {
            "format": STATE_FORMAT,
            "account": self.account,
            "symbol": self.symbol,
            "quantity": str(self.quantity),
            "realizedPnl": str(self.realized_pnl),
            "costBasis": str(self.cost_basis),
            "version": self.version,
            "status": self.status,
            "lastKey": _key_to_json(self.last_key),
            "schedule": self.schedule.to_dict(),
            "lots": self._book.encode(),
            "appliedTradeIds": self._applied.encode(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Position:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported position state format {state.get('format')!r}")
        position = cls(
            state["account"], state["symbol"], LotMethodSchedule.from_dict(state["schedule"])
        )
        position.quantity = Decimal(state["quantity"])
        position.realized_pnl = Decimal(state["realizedPnl"])
        position.cost_basis = Decimal(state["costBasis"])
        position.version = state["version"]
        position.status = state["status"]
        position.last_key = _key_from_json(state["lastKey"])
        position._book = LotBook.decode(state["lots"])
        position._applied = AppliedTradeIds.decode(state["appliedTradeIds"])
        return position

    def copy(self) -> Position:
        other = Position(self.account, self.symbol, self.schedule)
        other.quantity = self.quantity
        other.realized_pnl = self.realized_pnl
        other.cost_basis = self.cost_basis
        other.version = self.version
        other.status = self.status
        other.last_key = self.last_key
        other._book = self._book.copy()
        other._applied = self._applied.copy()
        return other

    def __repr__(self) -> str:
        return (
            f"Position({self.position_key!r}, qty={self.quantity}, lots={len(self._book)}, "
            f"realized={self.realized_pnl}, v{self.version}, {self.status})"
        )


def classify(position: Position, trade: TradeInput, business_date: date) -> str:
    """BACKDATED if the trade sorts before the last applied trade, else FORWARD_DATED when
    effective after the business date, else CURRENT_DATED (SPEC section 5).

    Check `position.is_applied` first: a resent trade sorts at its original place, so it would
    read as BACKDATED although it is a duplicate.
    """
    last = position.last_key
    if last is not None and trade.economic_key < last:
        return BACKDATED
    if trade.effective_date > business_date:
        return FORWARD_DATED
    return CURRENT_DATED


def apply_trade(
    position: Position, trade: TradeInput, lot_method: str | None = None
) -> ApplyResult:
    """Apply one trade in place; a trade id already applied is reported as a duplicate no-op.

    The lot method is `lot_method` when given, otherwise the position's schedule for the trade's
    effectiveDate. A trade sorting before the last applied one is applied as an estimate (its lot
    inserted at its economic place) and marks the position PROVISIONAL until a replay.
    """
    with localcontext(ENGINE_CONTEXT):
        return _apply(position, trade, lot_method)


def apply_trades(
    position: Position, trades: Iterable[TradeInput], lot_method: str | None = None
) -> list[ApplyResult]:
    """Apply trades in the given order (a polled batch); same rules as apply_trade, with the
    decimal context entered once for the whole batch."""
    with localcontext(ENGINE_CONTEXT):
        return [_apply(position, trade, lot_method) for trade in trades]


def apply_all(position: Position, trades: Iterable[TradeInput]) -> int:
    """Apply trades in the given order without keeping per-trade results (replay: 100,000
    retained results cost more in garbage collection than the reliefs); returns how many were
    applied, duplicates excluded."""
    applied = 0
    with localcontext(ENGINE_CONTEXT):
        for trade in trades:
            if not _apply(position, trade, None).duplicate:
                applied += 1
    return applied


def _apply(position: Position, trade: TradeInput, lot_method: str | None) -> ApplyResult:
    if trade.account != position.account or trade.symbol != position.symbol:
        raise ValueError(
            f"trade {trade.trade_id} is for {trade.position_key}, not {position.position_key}"
        )
    applied = position._applied
    if trade.trade_id in applied:
        return ApplyResult(
            trade_id=trade.trade_id,
            duplicate=True,
            backdated=False,
            lot_method=None,
            reliefs=(),
            opened_lot=None,
            realized_pnl=ZERO,
            quantity_after=position.quantity,
            lot_count_after=len(position._book),
            realized_after=position.realized_pnl,
            version=position.version,
        )
    method = (
        position.schedule.method_for(trade.effective_date)
        if lot_method is None
        else check_lot_method(lot_method)
    )
    key = trade.economic_key
    last = position.last_key
    backdated = last is not None and key < last
    reliefs, opened, realized = _relieve_and_open(position, trade, method, backdated)
    applied.add(trade.trade_id)
    if backdated:
        position.status = PROVISIONAL
    else:
        position.last_key = key
    position.version += 1
    return ApplyResult(
        trade_id=trade.trade_id,
        duplicate=False,
        backdated=backdated,
        lot_method=method,
        reliefs=tuple(reliefs),
        opened_lot=opened,
        realized_pnl=realized,
        quantity_after=position.quantity,
        lot_count_after=len(position._book),
        realized_after=position.realized_pnl,
        version=position.version,
    )


def _relieve_and_open(
    position: Position, trade: TradeInput, method: str, backdated: bool
) -> tuple[list[Relief], Lot | None, Decimal]:
    """The relief loop; runs inside ENGINE_CONTEXT. Kept flat because it is the hot path."""
    book = position._book
    price = trade.price
    remaining = trade.quantity
    buying = trade.side == BUY
    quantity = position.quantity
    reliefs: list[Relief] = []
    realized = ZERO
    basis = position.cost_basis
    if quantity and (quantity < 0) is buying:
        long_book = quantity > 0
        index = 0
        while remaining and book:
            if method == FIFO:
                lot = book.front()
            elif method == LIFO:
                lot = book.back()
            else:
                index = book.highest_cost_index()
                lot = book.at(index)
            lot_quantity = lot.quantity
            open_quantity = lot_quantity if long_book else -lot_quantity
            cost = lot.cost_price
            if remaining >= open_quantity:
                take = open_quantity
                left = ZERO
                if method == FIFO:
                    book.pop_front()
                elif method == LIFO:
                    book.pop_back()
                else:
                    book.delete_at(index)
            else:
                take = remaining
                left = lot_quantity - take if long_book else lot_quantity + take
                rest = lot.with_quantity(left)
                if method == FIFO:
                    book.set_front(rest)
                elif method == LIFO:
                    book.set_back(rest)
                else:
                    book.set_at(index, rest)
            if long_book:
                pnl = (price - cost) * take
                basis -= cost * take
            else:
                pnl = (cost - price) * take
                basis += cost * take
            realized += pnl
            remaining -= take
            reliefs.append(Relief(lot.trade_id, take, cost, pnl, left))
    opened = None
    if remaining:
        signed = remaining if buying else -remaining
        opened = Lot(trade.trade_id, trade.effective_date, trade.trade_time, signed, price)
        if backdated:
            book.insert_sorted(opened)
        else:
            book.append(opened)
        basis += price * signed
    position.quantity = quantity + (trade.quantity if buying else -trade.quantity)
    position.realized_pnl += realized
    position.cost_basis = basis
    return reliefs, opened, realized
