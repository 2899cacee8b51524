"""Scenario (a), object ingest: Avro orders -> latest-version table -> change feed.

Run: `python -m bench.bench_ingest [--quick] [--events N] [--profile DIR]`. Loopback only; the
default run (30,000 orders) takes about a minute on an idle 2-core machine.

The workload: order events from `app.simulator.OmsSimulator` (realistic sizes, the life cycle of
each order as successive sequences, ids spread by murmur2 over the partitions), plus re-sends of
earlier versions (`--stale`, default 15%) as an OMS replaying after a reconnect would make. Every
re-send is stale by construction (it repeats a version at or below one already produced for the
same key, on the same partition), so the expected applied/stale counts are exact and checked.

All records are produced before any consumer starts; then each pipeline reads the same topic
from the beginning in its own consumer group, one after the other:
1. the app: a `faust -A app.main worker` subprocess, progress from its `/metrics` counters;
2. raw: `bench.baselines raw-ingest` (aiokafka getmany + fastavro + rocksdict WriteBatch);
3. Quix Streams: `bench.baselines quix-ingest` (if an interpreter with quixstreams is found).
Rates and CPU per event are measured between the first and last observed progress of each.
With `--profile DIR`, py-spy samples the app worker during its run: the collapsed stacks are
written to DIR/ingest-app.txt and a summary of the top frames is printed after the table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.serde import build_serde
from app.simulator import OmsSimulator
from bench import common
from bench.common import Window, fmt

ORDERS = "order-events"
APPLIED = "blotter_events_applied_total"
STALE = "blotter_events_stale_total"
DLQ = "blotter_events_dead_lettered_total"


def order_records(count: int, stale_ratio: float, seed: int = 7) -> tuple[list, int, int]:
    """`count` encoded (key, value) order records with about `stale_ratio` stale re-sends;
    return (records, expected applied, expected stale)."""
    serde = build_serde(None)
    sim = OmsSimulator(seed=seed, backdated=False)
    rng = random.Random(seed)
    records: list[tuple[bytes, bytes]] = []
    stale = 0
    fresh = sim.events()
    while len(records) < count:
        if records and rng.random() < stale_ratio:
            # An earlier version of a recent order (or the latest, i.e. a duplicate).
            records.append(records[max(0, len(records) - rng.randint(1, 2_000))])
            stale += 1
            continue
        event = next(fresh)
        while event.topic_attr != "orders":
            event = next(fresh)
        value = serde.encode(event.value, event.record, "order-events-value")
        records.append((event.key.encode(), value))
    return records, count - stale, stale


def run_app(
    bench: common.Bench,
    expected: int,
    profile_dir: Path | None,
    timeout: float,
    workers: int = 1,
    produce: Callable[[], None] | None = None,
) -> tuple[Window, dict[str, Any]]:
    """Run `workers` worker processes in one consumer group over the orders. With `produce`,
    the orders are produced only once every worker is ready, so the group's rebalances as
    the workers join are over before the window opens."""
    fleet = [bench.worker(n) for n in range(workers)]
    started = time.monotonic()
    for worker in fleet:
        worker.start()
    ready = max(worker.wait_ready(120) for worker in fleet)
    pids = [worker.proc.pid for worker in fleet if worker.proc is not None]
    if produce is not None:
        common.wait_settled(fleet, 120)
        produce()
    profiler = None
    if profile_dir is not None:
        profiler = common.PySpy(pids[0], profile_dir / "ingest-app.txt", duration=int(timeout))
    counts: dict[str, float] = {}

    def progress() -> int:
        topic = bench.topic(ORDERS)
        totals = dict.fromkeys(("applied", "stale", "dlq"), 0.0)
        for worker in fleet:
            samples = common.scrape(worker.url)
            totals["applied"] += common.metric_sum(samples, APPLIED, topic=topic)
            totals["stale"] += common.metric_sum(samples, STALE, topic=topic)
            totals["dlq"] += common.metric_sum(samples, DLQ, topic=topic)
        counts.update(totals)
        return int(counts["applied"] + counts["stale"] + counts["dlq"])

    try:
        window = common.watch_progress(
            pids,
            progress,
            expected,
            timeout,
            alive=lambda: all(worker.proc.poll() is None for worker in fleet),
            broker_pid=bench.broker_pid,
        )
    finally:
        if profiler is not None:
            profiler.stop()
        for worker in fleet:
            worker.stop()
    window.ready_s = ready
    window.extra.update({k: int(v) for k, v in counts.items()})
    window.extra["start_to_done_s"] = time.monotonic() - started
    return window, {"profile": profiler.summary() if profiler else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ingest")
    parser.add_argument("--quick", action="store_true", help="10,000 events (smoke run)")
    parser.add_argument("--events", type=int, default=0, help="default 30,000 (quick 10,000)")
    parser.add_argument("--stale", type=float, default=0.15, help="share of stale re-sends")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--skip", default="", help="comma list of: app, raw, quix")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the app into DIR")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="app worker processes in one group (more than 1: orders produced once all are ready)",
    )
    args = parser.parse_args(argv)
    total = args.events or (10_000 if args.quick else 30_000)
    skip = set(filter(None, args.skip.split(",")))
    timeout = 60 + total / 100  # bounded even on a loaded machine (100 ev/s is a failure)

    common.print_machine()
    records, applied, stale = order_records(total, args.stale)
    size = sum(len(v) for _, v in records) / len(records)
    common.note(f"{total:,} orders ({stale:,} stale re-sends), {size:.0f} B average")
    rows: list[list[Any]] = []
    results: dict[str, Window] = {}
    with common.bench_run(args.partitions) as bench:
        orders = bench.topic(ORDERS)
        outputs = [bench.topic(f"{p}-{t}") for p in ("raw", "quix") for t in ("changes", "log")]
        bench.create_topics([orders, *outputs])

        def produce() -> None:
            seconds = asyncio.run(
                common.produce(bench.bootstrap, orders, records, args.partitions)
            )
            common.note(f"produced in {seconds:.1f} s ({total / seconds:,.0f} msg/s)")

        # several workers: produce once their group has settled (inside run_app)
        produce_first = args.workers == 1 or "app" in skip
        if produce_first:
            produce()

        info: dict[str, Any] = {}
        app_name = "app (Faust worker)" if args.workers == 1 else f"app ({args.workers} workers)"
        if "app" not in skip:
            common.note(f"{app_name} ...")
            window, info = run_app(
                bench, total, args.profile, timeout, args.workers,
                produce=None if produce_first else produce,
            )
            results[app_name] = window

        python = sys.executable
        base_args = [
            "--bootstrap",
            bench.bootstrap,
            "--topic",
            orders,
            "--expect",
            str(total),
            "--partitions",
            str(args.partitions),
            "--broker-pid",
            str(bench.broker_pid),
        ]
        if "raw" not in skip:
            common.note("raw pipeline ...")
            raw = Window.from_json(
                common.run_baseline(
                    python,
                    [
                        "raw-ingest",
                        *base_args,
                        "--group",
                        f"raw-{bench.tag}",
                        "--db",
                        str(bench.base / "raw.db"),
                        "--out",
                        bench.topic("raw-changes"),
                        "--changelog",
                        bench.topic("raw-log"),
                    ],
                    timeout,
                )
            )
            results["raw: getmany+fastavro+WriteBatch"] = raw
        quix = common.quix_python()
        if "quix" not in skip:
            if quix is None:
                common.note("quixstreams not found: set QUIX_PYTHON (see docs/benchmarks.md)")
            else:
                common.note("Quix Streams ...")
                qx = Window.from_json(
                    common.run_baseline(
                        quix,
                        [
                            "quix-ingest",
                            *base_args,
                            "--group",
                            f"quix-{bench.tag}",
                            "--db",
                            str(bench.base / "quix-state"),
                            "--out",
                            bench.topic("quix-changes"),
                        ],
                        timeout,
                    )
                )
                version = qx.extra.get("version", "?")
                results[f"Quix Streams {version}"] = qx

    app = results.get(app_name)
    app_rate = app.rate if app else float("nan")
    mismatches = [
        name
        for name, w in results.items()
        if (w.extra.get("applied"), w.extra.get("stale")) != (applied, stale)
    ]
    app_cpu = app.cpu_us if app else float("nan")
    for name, w in results.items():
        ratio = app_rate / w.rate if w.rate else float("nan")
        cpu_ratio = w.cpu_us / app_cpu if app_cpu else float("nan")
        rows.append(
            [
                name,
                fmt(w.rate),
                fmt(w.cpu_us),
                fmt(w.broker_cpu_us),
                fmt(w.peak_rss_mb),
                fmt(w.ready_s, 1),
                f"{w.extra.get('applied', '-')}/{w.extra.get('stale', '-')}",
                "1.00" if name.startswith("app") else f"{ratio:.2f}",
                "1.00" if name.startswith("app") else f"{cpu_ratio:.2f}",
            ]
        )
    common.print_table(
        f"object ingest: {total:,} Avro orders, {stale:,} stale, {args.partitions} partitions",
        [
            "pipeline",
            "events/s",
            "CPU us/event",
            "broker CPU us/event",
            "peak RSS MiB",
            "ready s",
            "applied/stale",
            "app/this events/s",
            "app/this events per CPU-s",
        ],
        rows,
    )
    common.print_load_after()
    for name in mismatches:
        got = results[name].extra
        print(
            f"MISMATCH {name}: applied/stale {got.get('applied')}/{got.get('stale')}, "
            f"expected {applied}/{stale}"
        )
    if info.get("profile"):
        print("\n" + info["profile"])
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
