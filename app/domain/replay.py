"""Event history, from-scratch replay and the correction a replay produces.

The coldpath's answer to a backdated trade is not a patch of the provisional estimate but a
rebuild: every accepted trade of the position, deduplicated by trade id and applied in economic
order with the lot method in force for each relieving trade. That is also the definition the
invariant tests use, so "what the books would have been had everything arrived in order" has one
implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from app.domain.decimals import decimal_str
from app.domain.lot_methods import LotMethodSchedule
from app.domain.positions import ENGINE_CONTEXT, RECONCILED, Position, apply_all
from app.domain.trades import TradeInput

TRADE_APPLIED = "TRADE_APPLIED"
PROVISIONAL_TRADE_APPLIED = "PROVISIONAL_TRADE_APPLIED"
CORRECTION = "CORRECTION"
EVENT_TYPES = (TRADE_APPLIED, PROVISIONAL_TRADE_APPLIED, CORRECTION)


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One entry of a position's append-only audit trail, stored as its own record.

    TRADE_APPLIED / PROVISIONAL_TRADE_APPLIED carry the trade that was applied; CORRECTION carries
    the backdated trade whose replay it records (already in the history, so replay ignores it as a
    duplicate) and the correction figures in `details`.
    """

    version: int
    type: str
    trade: TradeInput
    correlation_id: str | None = None
    causation_id: str | None = None
    recorded_time: int = 0  # epoch millis when the event was recorded
    details: Mapping[str, Any] | None = None  # JSON-compatible extra facts (e.g. a correction)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown history event type {self.type!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "type": self.type,
            "trade": self.trade.to_dict(),
            "recordedTime": self.recorded_time,
        }
        if self.correlation_id is not None:
            out["correlationId"] = self.correlation_id
        if self.causation_id is not None:
            out["causationId"] = self.causation_id
        if self.details is not None:
            out["details"] = dict(self.details)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryEvent:
        return cls(
            version=data["version"],
            type=data["type"],
            trade=TradeInput.from_dict(data["trade"]),
            correlation_id=data.get("correlationId"),
            causation_id=data.get("causationId"),
            recorded_time=data.get("recordedTime", 0),
            details=data.get("details"),
        )


def history_trades(events: Iterable[HistoryEvent]) -> list[TradeInput]:
    """The trades of a history in version order (corrections included; replay dedupes)."""
    return [event.trade for event in sorted(events, key=lambda event: event.version)]


def economic_order(trades: Iterable[TradeInput]) -> list[TradeInput]:
    """Trades deduplicated by id and sorted by economic key.

    For a repeated id the first occurrence wins, as on the hotpath, where the first arrival is
    applied and later ones are duplicates.
    """
    unique: dict[str, TradeInput] = {}
    for trade in trades:
        unique.setdefault(trade.trade_id, trade)
    return sorted(unique.values(), key=lambda trade: trade.economic_key)


def replay(
    position_key: str,
    trades: Iterable[TradeInput],
    schedule: LotMethodSchedule | None = None,
    *,
    version: int | None = None,
    status: str = RECONCILED,
) -> Position:
    """Rebuild a position from scratch from its accepted trades, in economic order.

    `version` defaults to the number of trades applied; the coldpath passes the next version of
    the live position instead, so versions never go backwards.
    """
    ordered = economic_order(trades)
    if ordered:
        account, symbol = ordered[0].account, ordered[0].symbol
    else:
        account, _, symbol = position_key.partition(":")
    position = Position(account, symbol, schedule)
    if position.position_key != position_key:
        raise ValueError(f"trades are for {position.position_key}, not {position_key}")
    for trade in ordered:
        if trade.account != account or trade.symbol != symbol:
            raise ValueError(f"trade {trade.trade_id} is for {trade.position_key}")
    apply_all(position, ordered)
    if version is not None:
        position.version = version
    position.status = status
    return position


@dataclass(frozen=True, slots=True)
class PositionFigures:
    """The figures a correction reports; exposure is None without a market price."""

    quantity: Decimal
    lot_count: int
    realized_pnl: Decimal
    exposure: Decimal | None

    @classmethod
    def of(cls, position: Position, price: Decimal | None) -> PositionFigures:
        return cls(
            position.quantity, position.lot_count, position.realized_pnl, position.exposure(price)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantity": decimal_str(self.quantity),
            "lotCount": self.lot_count,
            "realizedPnl": decimal_str(self.realized_pnl),
            "exposure": None if self.exposure is None else decimal_str(self.exposure),
        }


@dataclass(frozen=True, slots=True)
class Correction:
    """Before/after/delta of a replay, the content of HistoricalPositionCorrected."""

    position_key: str
    previous_version: int
    new_version: int
    before: PositionFigures
    after: PositionFigures
    delta: PositionFigures

    @property
    def changed(self) -> bool:
        """Whether the replay moved any reported figure (exposure follows quantity)."""
        return bool(self.delta.quantity or self.delta.lot_count or self.delta.realized_pnl)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON form named like the HistoricalPositionCorrected fields."""
        out: dict[str, Any] = {
            "positionKey": self.position_key,
            "previousVersion": self.previous_version,
            "newVersion": self.new_version,
        }
        for suffix, figures in (
            ("Before", self.before),
            ("After", self.after),
            ("Delta", self.delta),
        ):
            out.update({f"{name}{suffix}": value for name, value in figures.to_dict().items()})
        return out


def correction(before: Position, after: Position, price: Decimal | None) -> Correction:
    """Compare the provisional position with its replayed replacement at one market price."""
    if before.position_key != after.position_key:
        raise ValueError("a correction compares two states of the same position")
    old = PositionFigures.of(before, price)
    new = PositionFigures.of(after, price)
    with localcontext(ENGINE_CONTEXT):
        delta = PositionFigures(
            new.quantity - old.quantity,
            new.lot_count - old.lot_count,
            new.realized_pnl - old.realized_pnl,
            None if new.exposure is None or old.exposure is None else new.exposure - old.exposure,
        )
    return Correction(before.position_key, before.version, after.version, old, new, delta)
