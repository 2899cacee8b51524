"""Per-event costs of the pieces an event passes through in the worker, without Kafka or Faust:
the Avro decode and encode (`app.serde`) against plain fastavro on the same records, and the
ownership fence (`app.ownership`: one claim and two write checks per event) against an empty
loop. Figures are microseconds per call, best of `--repeat` rounds (the least disturbed by
other load), and the ratio to the baseline of the same run.

Run from the repository root: `python -m bench.bench_components` (`--quick` for a smoke run).
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import fastavro

from app import ownership
from app.serde import HEADER_SIZE, build_serde
from bench import common
from bench.bench_ingest import order_records


def best_us(run: Callable[[], int], repeat: int) -> float:
    """The fastest of `repeat` rounds, in microseconds per item (`run` returns its count)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        count = run()
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


def serde_rows(count: int, repeat: int) -> list[list[Any]]:
    records, _, _ = order_records(count, 0.15)
    values = [value for _, value in records]
    serde = build_serde(None)
    writer = fastavro.parse_schema(dict(serde.reader_schema("Order")))
    rows_decoded = [serde.decode(value, "Order") for value in values]

    def app_decode() -> int:
        for value in values:
            serde.decode(value, "Order")
        return len(values)

    def raw_decode() -> int:
        for value in values:
            buf = io.BytesIO(value)
            buf.seek(HEADER_SIZE)
            fastavro.schemaless_reader(buf, writer, None)
        return len(values)

    def app_encode() -> int:
        for row in rows_decoded:
            serde.encode(row, "Order", "order-events-value")
        return len(rows_decoded)

    def raw_encode() -> int:
        for row in rows_decoded:
            buf = io.BytesIO()
            buf.write(values[0][:HEADER_SIZE])
            fastavro.schemaless_writer(buf, writer, row)
        return len(rows_decoded)

    rows = []
    for name, app_run, raw_run in (
        ("Avro decode, order", app_decode, raw_decode),
        ("Avro encode, order", app_encode, raw_encode),
    ):
        app_us, raw_us = best_us(app_run, repeat), best_us(raw_run, repeat)
        rows.append([name, f"{app_us:.1f}", "plain fastavro", f"{raw_us:.1f}",
                     f"{app_us / raw_us:.2f}"])
    return rows


def fence_row(count: int, repeat: int) -> list[Any]:
    tp = ("orders", 0)
    app = SimpleNamespace(
        rebalancing=False,
        rebalancing_count=0,
        consumer_generation_id=1,
        consumer=SimpleNamespace(assignment=lambda: {tp}),
    )

    def fenced() -> int:
        for _ in range(count):
            with ownership.claimed(app, tp):
                ownership.ensure_owned()  # the table write
                ownership.ensure_owned()  # the persisted-offset write
        return count

    def empty() -> int:
        for _ in range(count):
            pass
        return count

    fence_us, loop_us = best_us(fenced, repeat), best_us(empty, repeat)
    return ["ownership claim + 2 write checks", f"{fence_us:.2f}", "empty loop",
            f"{loop_us:.2f}", f"{fence_us / loop_us:.0f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_components")
    parser.add_argument("--quick", action="store_true", help="fewer records and rounds")
    parser.add_argument("--repeat", type=int, default=0, help="rounds (default 7, quick 3)")
    args = parser.parse_args(argv)
    count = 2_000 if args.quick else 10_000
    repeat = args.repeat or (3 if args.quick else 7)
    common.print_machine()
    rows = [*serde_rows(count, repeat), fence_row(count * 10, repeat)]
    common.print_table(
        f"per-event components: {count:,} orders, best of {repeat} rounds",
        ["component", "us/call", "baseline", "baseline us/call", "ratio"],
        rows,
    )
    common.print_load_after()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
