"""The trade as the position engine sees it: validated once at the edge, immutable afterwards.

Everything downstream (relief, replay, the event history) trusts a `TradeInput`, so every check
that protects the arithmetic lives here: exact decimals only, strictly positive and bounded
magnitudes, a known side, and ids that can be stored in newline-separated state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from app.domain.decimals import decimal_str

BUY = "BUY"
SELL = "SELL"
SIDES = (BUY, SELL)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_MS = timedelta(milliseconds=1)

# Bounds on quantity and price. They keep every product and sum the engine forms far inside its
# decimal precision, so arithmetic stays exact instead of silently rounding; no real instrument
# comes near them.
MAX_ADJUSTED_EXPONENT = 20  # values below 10**21
MIN_EXPONENT = -20  # at most 20 decimal places

EconomicKey = tuple[date, int, str]

_ONE = Decimal(1)
_WIDE = Context(prec=100)  # wide enough that canonical_decimal never rounds


def epoch_ms_iso(epoch_ms: int) -> str:
    """Epoch millis as ISO-8601 UTC with milliseconds, the wire form of every timestamp."""
    moment = EPOCH + timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class InvalidTrade(ValueError):
    """A trade the engine refuses; the message is the reason given to the dead-letter queue."""


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidTrade(f"{name} is missing")
    # Ids are stored newline/tab separated in position state; control characters would corrupt it.
    if not value.isprintable():
        raise InvalidTrade(f"{name} contains control characters")


def _check_amount(name: str, value: object) -> None:
    if not isinstance(value, Decimal):
        raise InvalidTrade(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite() or value <= 0:
        raise InvalidTrade(f"{name} must be > 0, got {value}")
    exponent = value.as_tuple().exponent
    if value.adjusted() > MAX_ADJUSTED_EXPONENT or int(exponent) < MIN_EXPONENT:
        raise InvalidTrade(f"{name} is out of the supported range: {value}")


def to_decimal(name: str, value: object) -> Decimal:
    """Decimal from a decoded Avro decimal or a decimal string; floats are refused (inexact)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise InvalidTrade(f"{name} is not a decimal: {value!r}") from None
    raise InvalidTrade(f"{name} must be a decimal, got {type(value).__name__}")


def canonical_decimal(value: Decimal) -> Decimal:
    """The same value without the trailing zeros a fixed-scale Avro decimal carries
    (100.00000000 -> 100, 12.50000000 -> 12.5): smaller stored state, shorter P&L figures."""
    if not value.is_finite():
        return value
    if value == value.to_integral_value():
        return value.quantize(_ONE, context=_WIDE)
    return value.normalize(_WIDE)


def to_epoch_millis(name: str, value: object) -> int:
    """Epoch millis from Avro timestamp-millis (aware datetime) or an int, with no float step."""
    if isinstance(value, bool):
        raise InvalidTrade(f"{name} must be a timestamp")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - EPOCH) // _ONE_MS
    raise InvalidTrade(f"{name} must be a timestamp, got {type(value).__name__}")


def to_date(name: str, value: object) -> date:
    """A plain date from Avro date (date or days since epoch) or ISO text.

    datetime is a subclass of date but does not compare with it, so it is refused rather than
    allowed to break economic ordering later.
    """
    if isinstance(value, datetime):
        raise InvalidTrade(f"{name} must be a date, not a timestamp")
    if isinstance(value, date):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return date.fromordinal(EPOCH_ORDINAL + value)
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise InvalidTrade(f"{name} is not an ISO date: {value!r}") from None
    raise InvalidTrade(f"{name} must be a date, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class TradeInput:
    """One trade, validated on construction so a bad value can never reach a position."""

    trade_id: str
    account: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    trade_time: int  # epoch millis
    effective_date: date
    correlation_id: str | None = None
    causation_id: str | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        _check_id("tradeId", self.trade_id)
        _check_id("account", self.account)
        _check_id("symbol", self.symbol)
        if self.side not in SIDES:
            raise InvalidTrade(f"side must be BUY or SELL, got {self.side!r}")
        _check_amount("quantity", self.quantity)
        _check_amount("price", self.price)
        if not isinstance(self.trade_time, int) or isinstance(self.trade_time, bool):
            raise InvalidTrade("tradeTime must be epoch millis")
        if type(self.effective_date) is not date:
            raise InvalidTrade("effectiveDate must be a date")

    @property
    def economic_key(self) -> EconomicKey:
        """The order trades would have had if nothing arrived late (SPEC section 5)."""
        return (self.effective_date, self.trade_time, self.trade_id)

    @property
    def position_key(self) -> str:
        return f"{self.account}:{self.symbol}"

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side == BUY else -self.quantity

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> TradeInput:
        """Build from a decoded Avro Trade record; raises InvalidTrade with the reason.

        Decimals are made canonical (trailing zeros dropped); their values are unchanged.
        """
        try:
            return cls(
                trade_id=record.get("tradeId"),  # type: ignore[arg-type]
                account=record.get("account"),  # type: ignore[arg-type]
                symbol=record.get("symbol"),  # type: ignore[arg-type]
                side=record.get("side"),  # type: ignore[arg-type]
                quantity=canonical_decimal(to_decimal("quantity", record.get("quantity"))),
                price=canonical_decimal(to_decimal("price", record.get("price"))),
                trade_time=to_epoch_millis("tradeTime", record.get("tradeTime")),
                effective_date=to_date("effectiveDate", record.get("effectiveDate")),
                correlation_id=record.get("correlationId"),
                causation_id=record.get("causationId"),
                event_id=record.get("eventId"),
            )
        except InvalidTrade:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidTrade(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form for the event history (decimals as strings, date as ISO)."""
        out: dict[str, Any] = {
            "tradeId": self.trade_id,
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": str(self.quantity),
            "price": str(self.price),
            "tradeTime": self.trade_time,
            "effectiveDate": self.effective_date.isoformat(),
        }
        if self.correlation_id is not None:
            out["correlationId"] = self.correlation_id
        if self.causation_id is not None:
            out["causationId"] = self.causation_id
        if self.event_id is not None:
            out["eventId"] = self.event_id
        return out

    def to_json(self) -> dict[str, Any]:
        """The wire form (REST audit trail): decimals plain, tradeTime ISO-8601 UTC."""
        out = self.to_dict()
        out["quantity"] = decimal_str(self.quantity)
        out["price"] = decimal_str(self.price)
        out["tradeTime"] = epoch_ms_iso(self.trade_time)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TradeInput:
        return cls(
            trade_id=data["tradeId"],
            account=data["account"],
            symbol=data["symbol"],
            side=data["side"],
            quantity=Decimal(data["quantity"]),
            price=Decimal(data["price"]),
            trade_time=data["tradeTime"],
            effective_date=date.fromisoformat(data["effectiveDate"]),
            correlation_id=data.get("correlationId"),
            causation_id=data.get("causationId"),
            event_id=data.get("eventId"),
        )
