"""Blotter stream figures: end-to-end latency (OMS produce -> WebSocket client receive), rows/s
delivered, and worker memory per idle and per subscribed connection.

Run: `python -m bench.bench_blotter [--subscribers 100] [--rate 200] [--duration 10]`. Loopback
only: one embedded broker, one worker, and the producer and all clients in this process, so on a
small machine the clients' JSON decoding competes with the worker for CPU (figures are
conservative). Latency is measured per delivered row, from the wall-clock time the producer
stamped into the order (`correlationId`) to the time the client decoded the frame.

`--fanout-only` measures the server's stream logic alone, in process and without sockets or
Kafka: CPU per change to apply it to the replica, fan it out to the subscriptions and build every
receiver's frames. It is insensitive to other load on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from app.broker import EmbeddedBroker, free_port
from app.config import load_settings
from app.producer import OmsProducer
from app.serde import build_serde
from tests.conftest import Worker
from web.blotter.client import BlotterClient, View

ACCOUNTS = tuple(f"ACC-{i}" for i in range(10))
STATUSES = ("NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED")


def _filters(i: int) -> tuple[str, dict[str, Any] | None]:
    """Varied subscriber filters: per account (most blotters), per status, size, everything."""
    kind = i % 10
    if kind < 6:
        return "account", {"fieldName": "account", "operator": "equals", "value": ACCOUNTS[i % 10]}
    if kind < 8:
        return "status", {
            "logicalOperator": "AND",
            "filters": [
                {"fieldName": "status", "operator": "in", "value": ["NEW", "PARTIALLY_FILLED"]},
                {"fieldName": "account", "operator": "in", "value": list(ACCOUNTS[:5])},
            ],
        }
    if kind == 8:
        return "size", {"orderQty": {"filterType": "number", "type": "greaterThan", "filter": 500}}
    return "all", None


def _order(order_id: str, sequence: int, rng: random.Random) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    qty = Decimal(rng.choice(("100", "300", "800")))
    return {
        "eventId": uuid.uuid4().hex,
        "sequence": sequence,
        "eventTime": now,
        "orderId": order_id,
        "clOrdId": f"CL-{order_id}",
        "account": rng.choice(ACCOUNTS),
        "symbol": rng.choice(("AAPL", "MSFT", "IBM")),
        "side": "BUY",
        "orderType": "LIMIT",
        "timeInForce": "DAY",
        "orderQty": qty,
        "price": Decimal("101.25"),
        "stopPx": None,
        "status": rng.choice(STATUSES),
        "cumQty": Decimal(0),
        "leavesQty": qty,
        "avgPx": Decimal(0),
        "trader": "bench",
        "desk": "EQ",
        "transactTime": now,
        "correlationId": str(time.time_ns()),  # the producer's clock, read back by the client
        "causationId": None,
        "source": "bench",
    }


def _progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(worker: Worker, args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings(worker.env)
    assert worker.proc is not None
    pid = worker.proc.pid
    latencies: list[float] = []
    measuring = False

    def on_entry(view: View, entry: dict[str, Any], received: float) -> None:
        if measuring and entry.get("op") == "upsert":
            stamped = int(entry["row"]["correlationId"])
            latencies.append(time.time() - stamped / 1e9)

    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        _progress(f"worker pid {pid}")
        rss_start = _rss_bytes(pid)
        _progress(f"opening {args.idle} idle connections")
        idle = [BlotterClient(worker.url, f"idle{i}", compress=True) for i in range(args.idle)]
        for client in idle:
            await client.connect(http)
        await asyncio.sleep(1.0)
        rss_idle = _rss_bytes(pid)
        results["idle connections"] = args.idle
        results["worker RSS per idle connection (KiB)"] = (rss_idle - rss_start) / max(
            1, args.idle) / 1024
        for client in idle:
            await client.close()

        rng = random.Random(1)
        _progress(f"subscribing {args.subscribers} clients")
        subscribers = []
        rss_before_subs = _rss_bytes(pid)
        for i in range(args.subscribers):
            client = BlotterClient(worker.url, f"sub{i}", on_entry=on_entry)
            await client.connect(http)
            _, raw_filter = _filters(i)
            view = await client.subscribe("s", "Order", raw_filter, credits=1000)
            subscribers.append((client, view))
        for _, view in subscribers:
            await view.wait_snapshot()
        await asyncio.sleep(0.5)
        results["subscribers"] = args.subscribers
        results["worker RSS per subscribed connection (KiB)"] = (
            _rss_bytes(pid) - rss_before_subs) / max(1, args.subscribers) / 1024

        async with OmsProducer(settings, build_serde(None), linger_ms=1) as producer:
            # warm-up, not measured
            for n in range(50):
                await producer.send_record("orders", f"W-{n}", "Order", _order(f"W-{n}", 1, rng))
            await producer.flush()
            await asyncio.sleep(2.0)
            _progress(f"producing {args.rate:g} ev/s for {args.duration:g} s")
            received_before = sum(view.received for _, view in subscribers)
            measuring = True
            started = time.monotonic()
            sent = 0
            sequences: dict[str, int] = {}
            cpu_before = _cpu_seconds(pid)
            own_cpu_before = time.process_time()
            while time.monotonic() - started < args.duration:
                key = f"O-{rng.randrange(args.orders)}"
                sequences[key] = sequences.get(key, 0) + 1
                await producer.send_record("orders", key, "Order", _order(key, sequences[key], rng))
                sent += 1
                ahead = sent / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await producer.flush()
            produce_s = time.monotonic() - started
            await asyncio.sleep(2.0)  # let the tail arrive
            cpu_used = _cpu_seconds(pid) - cpu_before
            own_cpu_used = time.process_time() - own_cpu_before
            measuring = False
        delivered = sum(view.received for _, view in subscribers) - received_before
        results["events produced"] = sent
        results["event rate (ev/s)"] = sent / produce_s
        results["rows delivered"] = delivered
        results["rows/s delivered"] = delivered / (produce_s + 2.0)
        results["latency samples"] = len(latencies)
        results["latency p50 (ms)"] = _percentile(latencies, 0.50) * 1000
        results["latency p99 (ms)"] = _percentile(latencies, 0.99) * 1000
        results["latency max (ms)"] = max(latencies, default=float("nan")) * 1000
        results["latency mean (ms)"] = (statistics.fmean(latencies) * 1000) if latencies else 0
        results["worker CPU while producing (% of a core)"] = 100 * cpu_used / (produce_s + 2.0)
        results["bench clients+producer CPU (% of a core)"] = 100 * own_cpu_used / (
            produce_s + 2.0)
        results["regressions (must be 0)"] = sum(view.regressions for _, view in subscribers)
        for client, _ in subscribers:
            await client.close()
    return results


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fanout_only(subscribers: int, changes: int, orders: int) -> dict[str, Any]:
    import orjson

    from app.metadata import BLOTTER_OBJECT_TYPES
    from web.blotter.config import BlotterConfig
    from web.blotter.principal import ANONYMOUS_ALL_ACCOUNTS
    from web.blotter.replica import Replica
    from web.blotter.session import Session
    from web.blotter.subscriptions import FanOut

    rng = random.Random(1)
    replica = Replica(tuple(BLOTTER_OBJECT_TYPES))
    fanout = FanOut(replica)
    replica.mark_ready()
    config = BlotterConfig(max_credits=10**9)
    sessions = []
    for i in range(subscribers):
        session = Session(fanout, ANONYMOUS_ALL_ACCOUNTS, config)
        message = {"type": "subscribe", "id": "s", "objectType": "Order", "credits": 10**9}
        raw_filter = _filters(i)[1]
        if raw_filter is not None:
            message["filter"] = raw_filter
        session.handle_text(orjson.dumps(message))
        session.collect(10**6)
        sessions.append(session)
    rows = [_order(f"O-{n % orders}", n // orders + 1, rng) for n in range(changes)]
    frames = delivered = 0
    started = time.process_time()
    for n, row in enumerate(rows):
        replica.apply("Order", row["orderId"], row["sequence"], row)
        if n % 40 == 39:  # a batch interval at 2,000 changes/s
            for session in sessions:
                out = session.collect(10**6)
                frames += len(out)
    for session in sessions:
        frames += len(session.collect(10**6))
    elapsed = time.process_time() - started
    delivered = sum(
        sub.rows_sent for session in sessions for sub in session.subscriptions.values()
    )
    return {
        "subscribers": subscribers,
        "distinct filter groups": fanout.group_count,
        "changes": changes,
        "rows delivered": delivered,
        "frames built": frames,
        "CPU per change (us)": elapsed / changes * 1e6,
        "CPU per delivered row (us)": elapsed / max(1, delivered) * 1e6,
        "changes/s one core could fan out": changes / elapsed,
    }


def _print(results: dict[str, Any]) -> None:
    width = max(len(name) for name in results)
    for name, value in results.items():
        shown = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
        print(f"{name:<{width}}  {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0, help="order events per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of traffic")
    parser.add_argument("--orders", type=int, default=2000, help="distinct order ids")
    parser.add_argument("--idle", type=int, default=500, help="idle connections to measure")
    parser.add_argument("--fanout-only", action="store_true", help="in-process stream logic only")
    parser.add_argument("--changes", type=int, default=20_000, help="changes for --fanout-only")
    args = parser.parse_args()
    if args.fanout_only:
        _print(_fanout_only(args.subscribers, args.changes, args.orders))
        return

    base = Path(tempfile.mkdtemp(prefix="blotter-bench-"))
    broker = EmbeddedBroker(free_port(), base / "broker", log_path=base / "broker.log")
    broker.start()
    tag = uuid.uuid4().hex[:6]
    data = base / "w0"
    data.mkdir()
    env = {
        **os.environ,
        "EMBEDDED_BROKER_PORT": str(broker.port),
        "APP_ID": f"bench-{tag}",
        "TOPIC_PREFIX": f"b{tag}-",
        "TOPIC_PARTITIONS": "4",
        "AUTH_MODE": "disabled",
        "DATA_DIR": str(data),
        "WEB_PORT": str(free_port()),
        "CONSUMER_GROUP_INSTANCE_ID": f"bench-{tag}",
        "LOG_LEVEL": "WARNING",
        # Every bench client is the same (anonymous) user: lift the per-user stream limits,
        # which would refuse the idle connections and the subscribers with 429/RATE_LIMITED.
        "WS_MAX_CONNECTIONS_PER_USER": "100000",
        "WS_MAX_SUBSCRIPTIONS_PER_USER": "1000000",
        "WS_SUBSCRIBE_RATE_PER_S": "100000",
        "WS_SUBSCRIBE_BURST": "1000000",
        "WS_MESSAGE_RATE_PER_S": "1000000",
        "WS_MESSAGE_BURST": "10000000",
    }
    env.pop("BROKER_URL", None)
    worker = Worker(env, data, base / "w0.log")
    try:
        worker.start()
        worker.wait_ready(60)
        results = asyncio.run(_measure(worker, args))
    finally:
        worker.stop()
        broker.stop()
    _print(results)


if __name__ == "__main__":
    main()
