"""Scenario (b), trades -> positions with FIFO relief at 10 / 1,000 / 10,000 open lots.

Run: `python -m bench.bench_positions [--quick] [--levels 10,1000,10000] [--sells N]`. Loopback
only; the default run takes about 2 minutes on an otherwise idle 2-core machine.

For each level L, one worker (fresh tables, its own topics) gets L opening BUYs on each of
`--positions` positions (placed on distinct partitions), then a timed stream of small SELLs
(1 unit each: FIFO relieves the oldest lot partially, so the open-lot count stays at L). Every
trade is current-dated and later than the last, so all go through the hotpath (no coldpath).

How the lots are built: through the worker up to `--build-limit` lots per position (default 100;
the build rate is reported; building 4 x 10,000 lots through the worker would take longer than
the measurement itself).
Above that the positions are seeded: the same `Position` objects are built in this process with
the app's own domain code and written to the `positions` table's changelog, which the worker
restores on start, exactly as it would restore state it had written itself.

Figures per level: sells/s and CPU us per trade over the sell window, per-trade processing time
p50/p99 from the worker's `blotter_processing_seconds{agent="positions-hotpath"}` histogram
(difference of two scrapes around the sell window; linear interpolation inside buckets), the
size of one position snapshot, the `positions` changelog records and bytes the sell window
wrote per trade (read back from the topic), and the worker's peak RSS. Baseline in the same run:
the same relief on the same positions with the domain code alone (`apply_trade`, the history
event's encoding and a snapshot every `SNAPSHOT_EVERY` versions; no Kafka, no Faust), i.e. what
a framework-free loop would cost per trade.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from app.domain.lot_methods import LotMethodSchedule
from app.domain.positions import Position, apply_trade
from app.domain.replay import TRADE_APPLIED, HistoryEvent
from app.domain.trades import TradeInput
from app.serde import build_serde
from bench import common
from bench.common import fmt
from tables.positions import SNAPSHOT_EVERY

TRADES = "trade-events"
APPLIED = "blotter_events_applied_total"
STALE = "blotter_events_stale_total"
DLQ = "blotter_events_dead_lettered_total"
HOTPATH = "blotter_processing_seconds"
BUSINESS_DATE = dt.date(2024, 6, 3)
SYMBOL = "XYZ"
T0_MS = int(dt.datetime(2024, 6, 3, 13, 30, tzinfo=dt.UTC).timestamp() * 1000)
BUY_QTY = 1_000


def position_keys(count: int, partitions: int) -> list[str]:
    """Position keys on as many distinct partitions as possible, so the worker's partitions
    share the load the way many positions would."""
    keys: list[str] = []
    used: set[int] = set()
    n = 0
    while len(keys) < count:
        key = f"ACC-{n:03d}:{SYMBOL}"
        part = common.partition_of(key.encode(), partitions)
        if part not in used or len(used) >= partitions:
            keys.append(key)
            used.add(part)
        n += 1
    return keys


class TradeStream:
    """Trades in economic order: one millisecond apart, all on the business date."""

    def __init__(self) -> None:
        self.serde = build_serde(None)
        self.count = 0

    def record(self, key: str, side: str, quantity: int, price: Decimal) -> dict[str, Any]:
        self.count += 1
        account, _, symbol = key.partition(":")
        stamp = dt.datetime.fromtimestamp((T0_MS + self.count) / 1000, dt.UTC)
        return {
            "eventId": f"EVT-{self.count:09d}",
            "sequence": 1,
            "eventTime": stamp,
            "tradeId": f"TRD-{self.count:09d}",
            "account": account,
            "symbol": symbol,
            "side": side,
            "quantity": Decimal(quantity),
            "price": price,
            "tradeTime": stamp,
            "effectiveDate": BUSINESS_DATE,
            "contractId": None,
            "correlationId": None,
            "causationId": None,
            "source": "bench",
        }

    def encode(self, record: dict[str, Any]) -> tuple[bytes, bytes]:
        key = f"{record['account']}:{record['symbol']}".encode()
        return key, self.serde.encode(record, "Trade", "trade-events-value")


def price_of(n: int) -> Decimal:
    return Decimal(100) + Decimal(n % 200) / 100


def seeded_positions(
    keys: list[str], lots: int, stream: TradeStream
) -> tuple[dict[str, Position], list[tuple[bytes, bytes]]]:
    """Positions with `lots` open lots each, built with the app's domain code; and the
    changelog records (key, state) that make a worker restore them (Faust writes bytes table
    values to the changelog as they are)."""
    positions: dict[str, Position] = {}
    for key in keys:
        account, _, symbol = key.partition(":")
        position = Position(account, symbol, LotMethodSchedule("FIFO"))
        for i in range(lots):
            apply_trade(
                position, TradeInput.from_avro(stream.record(key, "BUY", BUY_QTY, price_of(i)))
            )
        positions[key] = position
    records = [(key.encode(), orjson.dumps(p.to_state())) for key, p in positions.items()]
    return positions, records


def domain_baseline(positions: dict[str, Position], sells: int, stream: TradeStream) -> float:
    """CPU us per SELL for what the app's domain code does per trade, alone, on copies of the
    positions: relief, the history event's encoding, and a snapshot every `SNAPSHOT_EVERY`
    versions."""
    copies = {k: p.copy() for k, p in positions.items()}
    keys = list(copies)
    trades = [
        TradeInput.from_avro(stream.record(keys[i % len(keys)], "SELL", 1, price_of(i)))
        for i in range(sells)
    ]
    started = time.process_time()
    for trade in trades:
        position = copies[f"{trade.account}:{trade.symbol}"]
        result = apply_trade(position, trade)
        orjson.dumps(HistoryEvent(result.version, TRADE_APPLIED, trade).to_dict())
        if result.version % SNAPSHOT_EVERY == 0:
            orjson.dumps(position.to_state())
    return (time.process_time() - started) / sells * 1e6


def run_level(args: argparse.Namespace, lots: int) -> dict[str, Any]:
    keys = position_keys(args.positions, args.partitions)
    stream = TradeStream()
    built_in_worker = lots <= args.build_limit
    sells = args.sells if lots < 10_000 else max(args.sells // 3, 200)
    out: dict[str, Any] = {"lots": lots, "positions": len(keys), "sells": sells}
    with common.bench_run(args.partitions) as bench:
        app_id = f"bench-{bench.tag}"
        trades = bench.topic(TRADES)
        changelog = f"{app_id}-positions-changelog"
        bench.create_topics([trades, changelog])
        positions: dict[str, Position] = {}
        if not built_in_worker:
            positions, records = seeded_positions(keys, lots, stream)
            asyncio.run(common.produce(bench.bootstrap, changelog, records, args.partitions))
        worker = bench.worker(0, app_id=app_id, BUSINESS_DATE=BUSINESS_DATE.isoformat())
        worker.start()
        out["ready_s"] = worker.wait_ready(180)
        assert worker.proc is not None
        pid = worker.proc.pid

        def applied() -> int:
            """Trades done: applied, or counted as duplicates (a redelivery after a rebalance,
            which a starved worker can go through; at-least-once makes it legal)."""
            samples = common.scrape(worker.url)
            got = common.metric_sum(samples, APPLIED, topic=trades)
            duplicates = common.metric_sum(samples, STALE, topic=trades)
            out["duplicates"] = int(duplicates)
            dead = common.metric_sum(samples, DLQ, topic=trades)
            if dead:
                raise RuntimeError(f"{dead} trades dead-lettered:\n{worker.log_tail()}")
            return int(got + duplicates)

        alive = lambda: worker.proc is not None and worker.proc.poll() is None  # noqa: E731
        if built_in_worker:
            buys = [
                stream.encode(stream.record(keys[k], "BUY", BUY_QTY, price_of(i)))
                for i in range(lots)
                for k in range(len(keys))
            ]
            asyncio.run(common.produce(bench.bootstrap, trades, buys, args.partitions))
            build = common.watch_progress(pid, applied, len(buys), args.timeout, alive)
            out["build_rate"] = build.rate
            # The same positions, in this process, for the state size and the domain baseline.
            mirror = TradeStream()
            positions, _ = seeded_positions(keys, lots, mirror)
        done = applied()
        before = common.scrape(worker.url)
        changelog_start = asyncio.run(common.end_offsets(bench.bootstrap, changelog))
        domain_stream = TradeStream()
        domain_stream.count = stream.count
        sell_records = [
            stream.encode(stream.record(keys[i % len(keys)], "SELL", 1, price_of(i)))
            for i in range(sells)
        ]
        profiler = None
        if args.profile is not None:
            target = args.profile / f"positions-{lots}.txt"
            profiler = common.PySpy(pid, target, duration=int(args.timeout))
        asyncio.run(common.produce(bench.bootstrap, trades, sell_records, args.partitions))
        try:
            window = common.watch_progress(
                pid, lambda: applied() - done, sells, args.timeout, alive
            )
        finally:
            if profiler is not None:
                profiler.stop()
                out["profile"] = profiler.summary()
        after = common.scrape(worker.url)
        worker.stop()
        changelog_records, changelog_bytes = asyncio.run(
            common.records_since(bench.bootstrap, changelog, changelog_start)
        )
    buckets = common.bucket_delta(
        common.histogram(after, HOTPATH, agent="positions-hotpath"),
        common.histogram(before, HOTPATH, agent="positions-hotpath"),
    )
    sample = next(iter(positions.values()))
    out.update(
        rate=window.rate,
        cpu_us=window.cpu_us,
        p50_ms=common.bucket_quantile(buckets, 0.5) * 1000,
        p99_ms=common.bucket_quantile(buckets, 0.99) * 1000,
        rss=window.peak_rss_mb,
        state_kib=len(orjson.dumps(sample.to_state())) / 1024,
        changelog_per_trade=changelog_records / sells,
        changelog_kib=changelog_bytes / 1024 / sells,
        domain_us=domain_baseline(positions, min(sells, 5_000), domain_stream),
        seeded=not built_in_worker,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_positions")
    parser.add_argument("--quick", action="store_true", help="fewer sells (smoke run)")
    parser.add_argument("--levels", default="10,1000,10000", help="open lots per position")
    parser.add_argument("--positions", type=int, default=4)
    parser.add_argument("--sells", type=int, default=0, help="default 3,000 (quick 500)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--build-limit",
        type=int,
        default=100,
        help="build up to this many lots per position through the worker",
    )
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the worker during each level's sells into DIR",
    )
    args = parser.parse_args(argv)
    args.sells = args.sells or (500 if args.quick else 3_000)
    common.print_machine()
    rows = []
    profiles = []
    for lots in (int(x) for x in args.levels.split(",")):
        common.note(f"{lots:,} open lots x {args.positions} positions ...")
        r = run_level(args, lots)
        if r.get("profile"):
            profiles.append(r)
        ratio = r["domain_us"] / r["cpu_us"] if r["cpu_us"] else float("nan")
        rows.append(
            [
                fmt(lots),
                fmt(r["sells"]),
                fmt(r["rate"]),
                fmt(r["cpu_us"]),
                f"{fmt(r['p50_ms'], 2)} / {fmt(r['p99_ms'], 2)}",
                fmt(r["state_kib"], 1),
                f"{r['changelog_per_trade']:.2f} / {fmt(r['changelog_kib'], 2)}",
                fmt(r["rss"]),
                "seeded" if r["seeded"] else fmt(r.get("build_rate")),
                fmt(r["ready_s"], 1),
                fmt(r["domain_us"], 1),
                f"{ratio:.3f}",
            ]
        )
    common.print_table(
        f"positions hotpath: FIFO sells on {args.positions} positions, one worker",
        [
            "open lots",
            "sells",
            "trades/s",
            "CPU us/trade",
            "p50 / p99 ms (agent)",
            "snapshot KiB",
            "changelog records / KiB per trade",
            "peak RSS MiB",
            "build buys/s",
            "ready s",
            "domain-only us/trade",
            "domain / app CPU",
        ],
        rows,
    )
    common.print_load_after()
    for r in profiles:
        print(f"\nprofile of the sells at {r['lots']:,} lots\n{r['profile']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
