"""An OMS simulator: realistic, deterministic-by-seed event flow for the input topics.

Orders move through their life cycle (PENDING_NEW -> NEW -> PARTIALLY_FILLED* -> FILLED, or
CANCELED/REJECTED) with an execution per step; quote requests get quotes; fills become trades on
the position topic; prices random-walk. Some trades are booked late (backdated) unless disabled.
Pure generation, no I/O: `cli.simulate` produces what this yields.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

DEFAULT_ACCOUNTS = ("ACC-001", "ACC-002", "ACC-003", "ACC-004")
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA", "JPM", "XOM")
DESKS = ("EQ-CASH", "EQ-PROG", "EQ-HT")
TRADERS = ("alice", "bob", "carol", "dave")
VENUES = ("XNAS", "XNYS", "ARCX", "BATS")
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One message to produce: topic attribute (of config.Topics), key, Avro record, value."""

    topic_attr: str
    key: str
    record: str
    value: dict[str, Any]


@dataclass
class _Order:
    order_id: str
    account: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    sequence: int = 0
    cum: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    execs: int = 0


@dataclass
class OmsSimulator:
    seed: int = 1
    accounts: tuple[str, ...] = DEFAULT_ACCOUNTS
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    backdated: bool = True
    business_date: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date())
    start_ms: int | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now_ms = self.start_ms or int(
            dt.datetime.combine(self.business_date, dt.time(13, 30), dt.UTC).timestamp() * 1000
        )
        self.prices = {s: Decimal(self.rng.randint(20, 900)) for s in self.symbols}
        self.price_seq = dict.fromkeys(self.symbols, 0)
        self.open_orders: list[_Order] = []
        self.counter = 0
        self.trade_count = 0

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.seed}-{self.counter:08d}"

    def _common(self, sequence: int, correlation: str | None = None) -> dict[str, Any]:
        return {
            "eventId": self._id("EVT"),
            "sequence": sequence,
            "eventTime": self._ts(),
            "correlationId": correlation,
            "causationId": None,
            "source": "oms-simulator",
        }

    def _ts(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now_ms / 1000, dt.UTC)

    def events(self) -> Iterator[SimEvent]:
        """An endless, seed-determined stream of events."""
        while True:
            self.now_ms += self.rng.randint(1, 40)
            roll = self.rng.random()
            if roll < 0.15:
                yield self._price_tick()
            elif roll < 0.35 or not self.open_orders:
                yield from self._new_order()
            elif roll < 0.45:
                yield from self._quote_flow()
            else:
                yield from self._order_step()

    def _price_tick(self) -> SimEvent:
        symbol = self.rng.choice(self.symbols)
        move = Decimal(self.rng.randint(-50, 50)) / 100
        self.prices[symbol] = max(Decimal(1), self.prices[symbol] + move).quantize(CENT)
        self.price_seq[symbol] += 1
        value = {
            **self._common(self.price_seq[symbol]),
            "symbol": symbol,
            "price": self.prices[symbol],
            "asOf": self._ts(),
        }
        return SimEvent("market_prices", symbol, "MarketPrice", value)

    def _order_value(self, o: _Order, status: str) -> dict[str, Any]:
        o.sequence += 1
        avg = (o.notional / o.cum).quantize(Decimal("0.0001")) if o.cum else Decimal(0)
        return {
            **self._common(o.sequence, correlation=o.order_id),
            "orderId": o.order_id,
            "clOrdId": f"CL-{o.order_id}",
            "account": o.account,
            "symbol": o.symbol,
            "side": o.side,
            "orderType": "LIMIT",
            "timeInForce": "DAY",
            "orderQty": o.qty,
            "price": o.price,
            "stopPx": None,
            "status": status,
            "cumQty": o.cum,
            "leavesQty": o.qty - o.cum if status not in ("CANCELED", "REJECTED") else Decimal(0),
            "avgPx": avg,
            "trader": self.rng.choice(TRADERS),
            "desk": self.rng.choice(DESKS),
            "transactTime": self._ts(),
        }

    def _new_order(self) -> Iterator[SimEvent]:
        symbol = self.rng.choice(self.symbols)
        o = _Order(
            order_id=self._id("ORD"),
            account=self.rng.choice(self.accounts),
            symbol=symbol,
            side=self.rng.choice(("BUY", "BUY", "SELL")),
            qty=Decimal(self.rng.randint(1, 50) * 100),
            price=self.prices[symbol],
        )
        self.open_orders.append(o)
        yield SimEvent("orders", o.order_id, "Order", self._order_value(o, "PENDING_NEW"))
        yield SimEvent("orders", o.order_id, "Order", self._order_value(o, "NEW"))

    def _execution(self, o: _Order, exec_type: str, qty: Decimal, px: Decimal) -> SimEvent:
        o.execs += 1
        avg = (o.notional / o.cum).quantize(Decimal("0.0001")) if o.cum else Decimal(0)
        value = {
            **self._common(1, correlation=o.order_id),
            "execId": f"EX-{o.order_id}-{o.execs}",
            "orderId": o.order_id,
            "account": o.account,
            "symbol": o.symbol,
            "side": o.side,
            "execType": exec_type,
            "lastQty": qty,
            "lastPx": px,
            "cumQty": o.cum,
            "leavesQty": o.qty - o.cum,
            "avgPx": avg,
            "venue": self.rng.choice(VENUES),
            "transactTime": self._ts(),
        }
        return SimEvent("executions", value["execId"], "Execution", value)

    def _order_step(self) -> Iterator[SimEvent]:
        o = self.rng.choice(self.open_orders)
        if self.rng.random() < 0.05:
            self.open_orders.remove(o)
            status = self.rng.choice(("CANCELED", "REJECTED"))
            yield SimEvent("orders", o.order_id, "Order", self._order_value(o, status))
            yield self._execution(
                o, "CANCELED" if status == "CANCELED" else "REJECTED", Decimal(0), Decimal(0)
            )
            return
        remaining = o.qty - o.cum
        fill = min(remaining, Decimal(self.rng.randint(1, 20) * 100))
        px = (o.price + Decimal(self.rng.randint(-5, 5)) / 100).quantize(CENT)
        o.cum += fill
        o.notional += fill * px
        done = o.cum == o.qty
        if done:
            self.open_orders.remove(o)
        yield self._execution(o, "TRADE", fill, px)
        yield SimEvent(
            "orders",
            o.order_id,
            "Order",
            self._order_value(o, "FILLED" if done else "PARTIALLY_FILLED"),
        )
        yield self._trade(o, fill, px)

    def _trade(self, o: _Order, qty: Decimal, px: Decimal) -> SimEvent:
        self.trade_count += 1
        trade_ms = self.now_ms
        effective = self.business_date
        if self.backdated and self.rng.random() < 0.03:
            # Booked late: an allocation from earlier in the week.
            days = self.rng.randint(1, 3)
            effective = self.business_date - dt.timedelta(days=days)
            trade_ms -= days * 86_400_000
        value = {
            **self._common(1, correlation=o.order_id),
            "tradeId": f"TRD-{o.order_id}-{o.execs}",
            "account": o.account,
            "symbol": o.symbol,
            "side": "BUY" if o.side == "BUY" else "SELL",
            "quantity": qty,
            "price": px,
            "tradeTime": dt.datetime.fromtimestamp(trade_ms / 1000, dt.UTC),
            "effectiveDate": effective,
            "contractId": None,
        }
        return SimEvent("trades", f"{o.account}:{o.symbol}", "Trade", value)

    def _quote_flow(self) -> Iterator[SimEvent]:
        symbol = self.rng.choice(self.symbols)
        req_id = self._id("QR")
        account = self.rng.choice(self.accounts)
        base = {
            "quoteReqId": req_id,
            "account": account,
            "symbol": symbol,
            "side": self.rng.choice(("BUY", "SELL")),
            "orderQty": Decimal(self.rng.randint(1, 100) * 100),
            "trader": self.rng.choice(TRADERS),
            "desk": self.rng.choice(DESKS),
            "expireTime": dt.datetime.fromtimestamp(self.now_ms / 1000 + 60, dt.UTC),
        }
        yield SimEvent(
            "quote_requests",
            req_id,
            "QuoteRequest",
            {**self._common(1, req_id), **base, "status": "OPEN"},
        )
        px = self.prices[symbol]
        quote_id = self._id("QT")
        yield SimEvent(
            "quotes",
            quote_id,
            "Quote",
            {
                **self._common(1, req_id),
                "quoteId": quote_id,
                "quoteReqId": req_id,
                "account": account,
                "symbol": symbol,
                "bidPx": (px - CENT * 3).quantize(CENT),
                "offerPx": (px + CENT * 3).quantize(CENT),
                "bidSize": Decimal(500),
                "offerSize": Decimal(500),
                "status": "ACTIVE",
                "validUntil": dt.datetime.fromtimestamp(self.now_ms / 1000 + 30, dt.UTC),
            },
        )
        status = self.rng.choice(("QUOTED", "ACCEPTED", "REJECTED", "EXPIRED"))
        yield SimEvent(
            "quote_requests",
            req_id,
            "QuoteRequest",
            {**self._common(2, req_id), **base, "status": status},
        )
