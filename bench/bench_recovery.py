"""Scenario (c), recovery: rebuilding a table from its changelog, and worker restart to ready.

Run: `python -m bench.bench_recovery [--quick] [--rows N]`. Loopback only; the default run takes
about a minute on a 2-core machine.

The `latest-order` table's changelog is filled directly with N rows (key: order id; value: the
8-byte sequence + Avro order, exactly what the table writes), so the measurement does not wait
for N events to be ingested first. Then, one after the other:
1. `empty`: a worker with an empty DATA_DIR and empty changelogs starts (the fixed cost of
   joining the group and starting Faust: the reference the next line is compared with);
2. `rebuild`: a worker with an empty DATA_DIR starts against the N-row changelog and restores
   it before it reports ready (changelog records/s = N / (rebuild - empty)); its log also says
   how many records the bulk restore (`tables.restore`) wrote and in how long;
3. `restart`: the same worker is stopped (SIGTERM) and started again on its warm DATA_DIR
   (only the changelog tail after the persisted offset is read);
4. spot check: a sample of rows is read back through the REST API.
Baseline in the same run: `bench.baselines raw-recover` reads the same changelog with aiokafka
`getmany` and writes it with rocksdict `WriteBatch`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
import urllib.request
from typing import Any

from app.domain.objects import pack_version
from bench import common
from bench.bench_ingest import order_records
from bench.common import Window, fmt

TABLE = "latest-order"


def changelog_rows(rows: int) -> list[tuple[bytes, bytes]]:
    """`rows` distinct order ids, each with a realistic stored value (sequence + an Avro order
    from the simulator; the simulator's orders are reused under new ids)."""
    records, _, _ = order_records(min(rows, 20_000), 0.0)
    return [
        (f"ORD-R-{i:09d}".encode(), pack_version(1, records[i % len(records)][1]))
        for i in range(rows)
    ]


BULK_LINE = re.compile(
    r"restored (\d+) changelog records into \d+ partition stores in bulk in ([\d.]+) s"
)


def bulk_restore(log_text: str) -> tuple[int, float]:
    """Records and seconds of the worker's bulk restores (its INFO log lines), summed."""
    found = BULK_LINE.findall(log_text)
    return sum(int(n) for n, _ in found), sum(float(s) for _, s in found)


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except Exception:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_recovery")
    parser.add_argument("--quick", action="store_true", help="10,000 rows (smoke run)")
    parser.add_argument("--rows", type=int, default=0, help="default 50,000 (quick 10,000)")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    rows = args.rows or (10_000 if args.quick else 50_000)
    common.print_machine()
    data = changelog_rows(rows)
    results: dict[str, Any] = {}
    with common.bench_run(args.partitions) as bench:
        app_id = f"bench-{bench.tag}"
        changelog = f"{app_id}-{TABLE}-changelog"
        bench.create_topics([changelog], compacted=[changelog])

        common.note("empty tables: start -> ready ...")
        empty = bench.worker(9, app_id=f"bench-empty-{bench.tag}")
        empty.start()
        results["empty"] = empty.wait_ready(120)
        empty.stop()

        seconds = asyncio.run(common.produce(bench.bootstrap, changelog, data, args.partitions))
        common.note(f"{rows:,} changelog rows produced in {seconds:.1f} s")

        common.note("empty DATA_DIR: rebuild -> ready ...")
        worker = bench.worker(0, app_id=app_id, LOG_LEVEL="INFO")
        started = time.monotonic()
        worker.start()
        results["rebuild"] = worker.wait_ready(300)
        assert worker.proc is not None
        results["rss"] = common.peak_rss_mb(worker.proc.pid)
        results["cpu"] = common.cpu_seconds(worker.proc.pid)
        results["rebuild_wall"] = time.monotonic() - started
        sample = random.Random(1).sample(data, 20)
        found = sum(
            get_status(f"{worker.url}/v1/objects/Order/{key.decode()}") == 200 for key, _ in sample
        )
        results["found"] = found
        results["bulk"] = bulk_restore(worker.log_path.read_text(errors="replace"))

        common.note("warm DATA_DIR: restart -> ready ...")
        t = time.monotonic()
        worker.stop()
        results["stop"] = time.monotonic() - t
        worker.start()
        results["restart"] = worker.wait_ready(120)
        worker.stop()

        common.note("raw rebuild baseline ...")
        raw = Window.from_json(
            common.run_baseline(
                sys.executable,
                [
                    "raw-recover",
                    "--bootstrap",
                    bench.bootstrap,
                    "--topic",
                    changelog,
                    "--expect",
                    str(rows),
                    "--partitions",
                    str(args.partitions),
                    "--db",
                    str(bench.base / "raw-recover.db"),
                ],
                300,
            )
        )

    restore_s = results["rebuild"] - results["empty"]
    app_rate = rows / restore_s if restore_s > 0 else float("nan")
    bulk_records, bulk_seconds = results["bulk"]
    bulk_rate = bulk_records / bulk_seconds if bulk_seconds > 0 else float("nan")
    common.print_table(
        f"recovery: {rows:,}-row table, {args.partitions} partitions, one worker",
        ["measure", "value"],
        [
            ["start -> ready, empty tables (s)", fmt(results["empty"], 2)],
            ["start -> ready, empty DATA_DIR, rebuild (s)", fmt(results["rebuild"], 2)],
            ["rebuild: changelog records/s (app)", fmt(app_rate)],
            ["rebuild: worker CPU at ready (s)", fmt(results["cpu"], 1)],
            ["rebuild: worker peak RSS (MiB)", fmt(results["rss"])],
            ["rebuild: records restored in bulk (worker log)", fmt(bulk_records)],
            ["rebuild: bulk restore records/s (worker log)", fmt(bulk_rate)],
            ["raw getmany+WriteBatch: records/s", fmt(raw.rate)],
            ["raw: CPU us/record", fmt(raw.cpu_us, 1)],
            ["app / raw records/s", f"{app_rate / raw.rate:.2f}" if raw.rate else "-"],
            ["SIGTERM -> exited (s)", fmt(results["stop"], 2)],
            ["restart -> ready, warm DATA_DIR (s)", fmt(results["restart"], 2)],
            ["rows found via REST after rebuild", f"{results['found']}/20"],
        ],
    )
    common.print_load_after()
    return 0 if results["found"] == 20 else 1


if __name__ == "__main__":
    raise SystemExit(main())
