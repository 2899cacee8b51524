"""The records the position engine publishes: TradeApplied, ProvisionalTradeApplied,
HistoricalPositionCorrected and the Position row of the change feed.

The engine keeps exact decimals; the Avro schemas carry decimals at scale 8. Outputs are
quantized to that scale (half-even) — a no-op for any realistic price x quantity — while REST
serves the exact state.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from app.domain.positions import ApplyResult, Position
from app.domain.replay import Correction
from app.domain.trades import TradeInput

SCALE = Decimal("1E-8")
_CTX = Context(prec=80)
ZERO = Decimal(0)


def q8(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    return value.quantize(SCALE, rounding=ROUND_HALF_EVEN, context=_CTX)


def _ms(epoch_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC)


def _common(event_id: str, sequence: int, now_ms: int, trade: TradeInput) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "sequence": sequence,
        "eventTime": _ms(now_ms),
        "correlationId": trade.correlation_id,
        "causationId": trade.event_id or trade.trade_id,
        "source": "position-engine",
    }


def trade_applied(
    position: Position,
    trade: TradeInput,
    result: ApplyResult,
    classification: str,
    now_ms: int,
    *,
    provisional: bool,
    last_applied_trade_id: str | None = None,
) -> dict[str, Any]:
    """TradeApplied (or ProvisionalTradeApplied when `provisional`) for one applied trade."""
    opened = result.opened_lot
    record: dict[str, Any] = {
        **_common(f"{position.position_key}:{result.version}", result.version, now_ms, trade),
        "positionKey": position.position_key,
        "account": position.account,
        "symbol": position.symbol,
        "tradeId": trade.trade_id,
        "version": result.version,
        "side": trade.side,
        "quantity": q8(trade.quantity),
        "price": q8(trade.price),
        "tradeTime": _ms(trade.trade_time),
        "effectiveDate": trade.effective_date,
        "lotMethod": result.lot_method or position.lot_method,
        "lotsRelieved": [
            {
                "lotId": relief.lot_id,
                "tradeId": relief.lot_id,  # a lot is identified by its opening trade
                "quantity": q8(relief.quantity),
                "costPrice": q8(relief.cost_price),
                "realizedPnl": q8(relief.realized_pnl),
            }
            for relief in result.reliefs
        ],
        "openedLotId": opened.lot_id if opened is not None else None,
        "openedQuantity": q8(opened.quantity) if opened is not None else None,
        "quantityAfter": q8(result.quantity_after),
        "lotCountAfter": position.lot_count,
        "realizedPnl": q8(result.realized_pnl),
        "realizedPnlAfter": q8(result.realized_after),
        "status": position.status,
    }
    if provisional:
        record["lastAppliedTradeId"] = last_applied_trade_id
    else:
        record["classification"] = classification
    return record


def position_corrected(
    position: Position, correction: Correction, trade_id: str, correlation_id: str | None,
    replayed: int, now_ms: int,
) -> dict[str, Any]:
    """HistoricalPositionCorrected for one replay."""
    before, after, delta = correction.before, correction.after, correction.delta
    return {
        "eventId": f"{position.position_key}:{correction.new_version}:corrected",
        "sequence": correction.new_version,
        "eventTime": _ms(now_ms),
        "correlationId": correlation_id,
        "causationId": trade_id,
        "source": "position-engine",
        "positionKey": position.position_key,
        "account": position.account,
        "symbol": position.symbol,
        "tradeId": trade_id,
        "previousVersion": correction.previous_version,
        "newVersion": correction.new_version,
        "quantityBefore": q8(before.quantity),
        "quantityAfter": q8(after.quantity),
        "quantityDelta": q8(delta.quantity),
        "lotCountBefore": before.lot_count,
        "lotCountAfter": after.lot_count,
        "lotCountDelta": delta.lot_count,
        "realizedPnlBefore": q8(before.realized_pnl),
        "realizedPnlAfter": q8(after.realized_pnl),
        "realizedPnlDelta": q8(delta.realized_pnl),
        "exposureBefore": q8(before.exposure) if before.exposure is not None else ZERO,
        "exposureAfter": q8(after.exposure) if after.exposure is not None else ZERO,
        "exposureDelta": q8(delta.exposure) if delta.exposure is not None else ZERO,
        "replayedTradeCount": replayed,
        "lotMethod": position.lot_method,
        "status": position.status,
    }


def position_row(position: Position, price: Decimal | None, now_ms: int) -> dict[str, Any]:
    """The Position row of the change feed (schemas/Position.avsc)."""
    unrealized = position.unrealized_pnl(price)
    exposure = position.exposure(price)
    return {
        "positionKey": position.position_key,
        "account": position.account,
        "symbol": position.symbol,
        "quantity": q8(position.quantity),
        "lotCount": position.lot_count,
        "realizedPnl": q8(position.realized_pnl),
        "unrealizedPnl": q8(unrealized) if unrealized is not None else ZERO,
        "exposure": q8(exposure) if exposure is not None else ZERO,
        "lastPrice": q8(price),
        "costBasis": q8(position.cost_basis),
        "lotMethod": position.lot_method,
        "status": position.status,
        "version": position.version,
        "updatedTime": _ms(now_ms),
    }
