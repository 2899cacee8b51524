"""Embedded-broker lifecycle figures: broker start, worker ready, SIGTERM stop, kill -9 restart,
second-worker takeover. Run: `python -m bench.broker_lifecycle` (loopback only, ~1 minute)."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from app.broker import EmbeddedBroker, free_port
from tests.conftest import Worker


def _worker(base: Path, port: int, tag: str, n: int) -> Worker:
    data = base / f"w{n}"
    data.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "EMBEDDED_BROKER_PORT": str(port),
        "APP_ID": f"bench-{tag}",
        "TOPIC_PREFIX": f"b{tag}-",
        "TOPIC_PARTITIONS": "4",
        "AUTH_MODE": "disabled",
        "DATA_DIR": str(data),
        "WEB_PORT": str(free_port()),
        "CONSUMER_GROUP_INSTANCE_ID": f"bench-{tag}-{n}",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("BROKER_URL", None)
    return Worker(env, data, base / f"w{n}.log")


def main(rounds: int = 3) -> None:
    base = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    port = free_port()
    t0 = time.monotonic()
    broker = EmbeddedBroker(port, base / "broker")
    broker.start()
    figures: dict[str, list[float]] = {"broker listening": [time.monotonic() - t0]}
    try:
        tag = uuid.uuid4().hex[:6]
        w = _worker(base, port, tag, 0)
        for _ in range(rounds):
            t = time.monotonic()
            w.start()
            w.wait_ready(60)
            figures.setdefault("worker start -> ready (s)", []).append(time.monotonic() - t)
            t = time.monotonic()
            w.stop()
            figures.setdefault("SIGTERM -> exited (s)", []).append(time.monotonic() - t)
        w.start()
        w.wait_ready(60)
        for _ in range(rounds):
            w.kill()
            t = time.monotonic()
            w.start()
            w.wait_ready(60)
            figures.setdefault("kill -9 -> replacement ready (s)", []).append(time.monotonic() - t)
        w2 = _worker(base, port, tag, 1)
        t = time.monotonic()
        w2.start()
        w2.wait_ready(60)
        figures.setdefault("second worker joins -> ready (s)", []).append(time.monotonic() - t)
        t = time.monotonic()
        w.stop()
        w2.stop()
        figures.setdefault("stop both (s)", []).append(time.monotonic() - t)
    finally:
        broker.stop()
    print(f"{'measure':40} {'median':>8} {'max':>8}  n")
    for name, values in figures.items():
        print(f"{name:40} {statistics.median(values):8.2f} {max(values):8.2f}  {len(values)}")


if __name__ == "__main__":
    main()
