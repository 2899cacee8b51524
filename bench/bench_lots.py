"""Benchmark of the pure position engine (no Kafka, no Faust): relief, state storage, replay.

Run from the repository root: `python bench/bench_lots.py` (add `--quick` for a smoke run).
Prints three tables:
1. apply_trade per trade at 10 / 1,000 / 10,000 open lots for FIFO, LIFO and HIFO. The workload
   repeats BUY 100 then four SELL 25, so the open-lot count stays where it started: buys add lots,
   sells relieve small quantities (mostly partial reliefs, one lot closed per cycle).
2. Position state at 1,000 open lots and 10,000 applied trade ids: size, to_state/from_state and
   JSON (orjson) costs, and one uncached hotpath cycle (load, apply, store) as a table-per-event
   agent would pay it.
3. Replay of a stored history of 1,000 / 10,000 / 100,000 events (10% opening buys, then the
   workload above, stored shuffled): decoding the event records and rebuilding the position in
   economic order.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import orjson

try:
    import app.domain.positions  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.domain.lot_methods import LOT_METHODS, LotMethodSchedule
from app.domain.positions import Position, apply_trade
from app.domain.replay import TRADE_APPLIED, HistoryEvent, history_trades, replay
from app.domain.trades import TradeInput

ACCOUNT = "ACC-001"
SYMBOL = "XYZ"
KEY = f"{ACCOUNT}:{SYMBOL}"
START = date(2024, 1, 2)
T0 = 1_704_186_000_000


class TradeFactory:
    """Deterministic trades in economic order (one per millisecond, ten per day)."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.count = 0

    def make(self, side: str, quantity: int) -> TradeInput:
        self.count += 1
        n = self.count
        cents = self.random.randint(9_000, 11_000)
        return TradeInput(
            trade_id=f"TRD-{n:09d}",
            account=ACCOUNT,
            symbol=SYMBOL,
            side=side,
            quantity=Decimal(quantity),
            price=Decimal(cents).scaleb(-2),
            trade_time=T0 + n,
            effective_date=START + timedelta(days=n // 10),
        )

    def workload(self, count: int) -> list[TradeInput]:
        """BUY 100, SELL 25 x 4, repeated: the open-lot count is stable."""
        return [
            self.make("BUY", 100) if i % 5 == 0 else self.make("SELL", 25) for i in range(count)
        ]


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def position_with_lots(lots: int, method: str, factory: TradeFactory) -> Position:
    buys = [factory.make("BUY", 100) for _ in range(lots)]
    return replay(KEY, buys, LotMethodSchedule(method))


def bench_apply(lots: int, method: str, trades: int) -> dict[str, float]:
    factory = TradeFactory(seed=lots)
    position = position_with_lots(lots, method, factory)
    workload = factory.workload(trades)
    timings: list[int] = []
    clock = time.perf_counter_ns
    gc.collect()
    started = clock()
    for item in workload:
        before = clock()
        apply_trade(position, item)
        timings.append(clock() - before)
    elapsed = (clock() - started) / 1e9
    assert abs(position.lot_count - lots) <= 1, position.lot_count
    timings.sort()
    return {
        "trades": trades,
        "per_s": trades / elapsed,
        "p50_us": percentile(timings, 0.50) / 1e3,
        "p99_us": percentile(timings, 0.99) / 1e3,
        "max_us": timings[-1] / 1e3,
    }


def best_of(function: Callable[[], object], repeat: int) -> float:
    """Best wall time in microseconds over `repeat` calls."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter_ns()
        function()
        best = min(best, time.perf_counter_ns() - started)
    return best / 1e3


def bench_state(lots: int, history: int, cycles: int) -> list[tuple[str, str]]:
    factory = TradeFactory(seed=7)
    buys = [factory.make("BUY", 100) for _ in range(lots)]
    position = replay(KEY, buys + factory.workload(history - lots), LotMethodSchedule("FIFO"))
    state = position.to_state()
    blob = orjson.dumps(state)
    rows = [
        (
            "open lots / applied trade ids",
            f"{position.lot_count:,} / {position.applied_trade_count:,}",
        ),
        ("state size (orjson bytes)", f"{len(blob):,}"),
        (
            "  of which lots / trade ids",
            f"{len(state['lots']):,} / {len(state['appliedTradeIds']):,}",
        ),
        ("to_state", f"{best_of(position.to_state, 50):,.0f} us"),
        ("orjson.dumps(state)", f"{best_of(lambda: orjson.dumps(state), 50):,.0f} us"),
        ("orjson.loads(bytes)", f"{best_of(lambda: orjson.loads(blob), 50):,.0f} us"),
        ("from_state (lazy)", f"{best_of(lambda: Position.from_state(state), 50):,.0f} us"),
        (
            "from_state + decode all lots",
            f"{best_of(lambda: Position.from_state(state).lots, 20):,.0f} us",
        ),
    ]
    # One uncached hotpath cycle per trade: load the stored bytes, apply, store.
    stored = blob
    timings: list[int] = []
    for item in factory.workload(cycles):
        before = time.perf_counter_ns()
        loaded = Position.from_state(orjson.loads(stored))
        apply_trade(loaded, item)
        stored = orjson.dumps(loaded.to_state())
        timings.append(time.perf_counter_ns() - before)
    timings.sort()
    rows.append(
        (
            "load + apply + store cycle p50 / p99",
            f"{percentile(timings, 0.5) / 1e3:,.0f} / {percentile(timings, 0.99) / 1e3:,.0f} us",
        )
    )
    return rows


def bench_replay(events: int) -> dict[str, float]:
    factory = TradeFactory(seed=events)
    opening = events // 10  # so the replayed position carries open lots throughout
    trades = [factory.make("BUY", 100) for _ in range(opening)] + factory.workload(events - opening)
    random.Random(1).shuffle(trades)  # stored in arrival order, replayed in economic order
    records = [
        orjson.dumps(HistoryEvent(version, TRADE_APPLIED, trade, None, None, T0).to_dict())
        for version, trade in enumerate(trades, start=1)
    ]
    gc.collect()
    started = time.perf_counter()
    decoded = [HistoryEvent.from_dict(orjson.loads(record)) for record in records]
    ordered = history_trades(decoded)
    decoding = time.perf_counter() - started
    started = time.perf_counter()
    position = replay(KEY, ordered, LotMethodSchedule("FIFO"))
    replaying = time.perf_counter() - started
    assert position.version == events
    return {
        "events": events,
        "decode_ms": decoding * 1e3,
        "replay_ms": replaying * 1e3,
        "total_ms": (decoding + replaying) * 1e3,
        "lots": position.lot_count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    began = time.perf_counter()
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}")

    print("\n1. apply_trade per trade (BUY 100 / SELL 25 x4 workload)")
    print(
        f"{'open lots':>9} {'method':>6} {'trades':>7} {'trades/s':>10} "
        f"{'p50 us':>8} {'p99 us':>8} {'max us':>8}"
    )
    for lots in (10, 1_000, 10_000):
        for method in LOT_METHODS:
            count = 20_000 // scale
            if method == "HIFO" and lots >= 10_000:
                count = 2_000 // scale
            row = bench_apply(lots, method, count)
            print(
                f"{lots:>9,} {method:>6} {row['trades']:>7,} {row['per_s']:>10,.0f} "
                f"{row['p50_us']:>8.1f} {row['p99_us']:>8.1f} {row['max_us']:>8.1f}"
            )

    print("\n2. position state at 1,000 open lots")
    for label, value in bench_state(1_000, 10_000 // scale, 2_000 // scale):
        print(f"  {label:<38} {value:>18}")

    print("\n3. replay of a stored history (decode records, rebuild in economic order)")
    print(f"{'events':>9} {'decode ms':>10} {'replay ms':>10} {'total ms':>10} {'open lots':>10}")
    for events in (1_000, 10_000, 100_000):
        row = bench_replay(events // scale)
        print(
            f"{row['events']:>9,} {row['decode_ms']:>10.1f} {row['replay_ms']:>10.1f} "
            f"{row['total_ms']:>10.1f} {row['lots']:>10,}"
        )
    print(f"\n(total bench time {time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":
    main()
