"""A small fleet of worker processes on loopback, and the probes that say whether it is healthy.

"Resumed" is judged from the outside, as an SRE would: every live worker is ready, every
partition of every source topic is reported by some live worker's `blotter_consumer_lag` gauge
(so it is assigned and has been fetched), the lag of each is back under a small bound, and
`/health/detailed` shows no stalled partition and no crashed agent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.broker import free_port
from app.config import Settings, load_settings
from tests.conftest import Worker

MAX_WORKERS = 3
CAUGHT_UP_LAG = 25  # messages per partition; the stream keeps flowing while we look


def http_get(url: str, timeout: float = 3.0) -> tuple[int | None, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None, b""


def parse_lag(metrics_text: str) -> dict[tuple[str, int], float]:
    """`blotter_consumer_lag{partition="0",topic="x"} 3.0` lines -> {(x, 0): 3.0}."""
    lags: dict[tuple[str, int], float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith("blotter_consumer_lag{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(
            part.split("=", 1) for part in labels_text[labels_text.index("{") + 1 : -1].split(",")
        )
        topic = labels["topic"].strip('"')
        partition = int(labels["partition"].strip('"'))
        lags[(topic, partition)] = float(value)
    return lags


@dataclass
class ProbeResult:
    """One look at the fleet."""

    ready: bool
    missing: list[tuple[str, int]]
    lagging: dict[tuple[str, int], float]
    stalled: list[str]
    crashed: list[str]
    total_lag: float
    other_stalled: list[str] = field(default_factory=list)  # e.g. changelogs (health false alarm)

    @property
    def resumed(self) -> bool:
        return self.ready and not self.missing and not self.lagging and not self.stalled

    def summary(self) -> str:
        return (
            f"ready={self.ready} missing={len(self.missing)} lagging={len(self.lagging)} "
            f"stalled={self.stalled} crashed={self.crashed} total_lag={self.total_lag:.0f}"
        )


@dataclass
class Fleet:
    """Workers sharing one app id and topic prefix; worker N keeps its data dir and its static
    group membership id across restarts, like a StatefulSet pod."""

    base_env: dict[str, str]
    run_dir: Path
    workers: dict[int, Worker] = field(default_factory=dict)

    @classmethod
    def create(
        cls, run_dir: Path, broker_port: int, tag: str, extra_env: Mapping[str, str]
    ) -> Fleet:
        env = {
            **os.environ,
            "EMBEDDED_BROKER_PORT": str(broker_port),
            "APP_ID": f"chaos-{tag}",
            "TOPIC_PREFIX": f"c{tag}-",
            "TOPIC_PARTITIONS": "4",
            "AUTH_MODE": "disabled",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        env.pop("BROKER_URL", None)
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(env, run_dir)

    @property
    def settings(self) -> Settings:
        return load_settings(self.base_env)

    def source_topics(self) -> list[str]:
        """Topics the agents consume: inputs, their internal re-key topics, backdated trades."""
        topics = self.settings.topics
        app_id = self.base_env["APP_ID"]
        return [
            *topics.inputs(),
            *(f"{app_id}-{t}-rekey" for t in topics.inputs()),
            topics.backdated,
        ]

    def worker(self, index: int) -> Worker:
        if index not in self.workers:
            data_dir = self.run_dir / f"worker{index}"
            data_dir.mkdir(exist_ok=True)
            env = {
                **self.base_env,
                "DATA_DIR": str(data_dir),
                "WEB_PORT": str(free_port()),
                "CONSUMER_GROUP_INSTANCE_ID": f"{self.base_env['APP_ID']}-worker-{index}",
            }
            self.workers[index] = Worker(env, data_dir, self.run_dir / f"worker{index}.log")
        return self.workers[index]

    def live(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.proc is not None and w.proc.poll() is None]

    def live_indexes(self) -> list[int]:
        return [i for i, w in self.workers.items() if w.proc is not None and w.proc.poll() is None]

    def start(self, index: int) -> Worker:
        assert len(self.live()) < MAX_WORKERS, "keep at most three workers on two cores"
        worker = self.worker(index)
        worker.start()
        return worker

    def kill(self, index: int) -> None:
        """kill -9: no LeaveGroup, no final commit, no flush."""
        self.workers[index].kill()

    def terminate(self, index: int, grace_s: float) -> tuple[float, int | None]:
        """SIGTERM and wait up to `grace_s`; (seconds taken, exit code or None if it had to be
        killed after the grace period)."""
        worker = self.workers[index]
        proc, worker.proc = worker.proc, None
        assert proc is not None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        return time.monotonic() - started, code

    def wipe_state(self, index: int) -> int:
        """Delete the worker's local RocksDB tables (it must be stopped); files removed."""
        worker = self.workers[index]
        assert worker.proc is None, "wipe only a stopped worker"
        removed = 0
        for child in worker.data_dir.iterdir():
            removed += sum(1 for p in child.rglob("*") if p.is_file()) if child.is_dir() else 1
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        return removed

    def stop_all(self, grace_s: float = 30.0) -> None:
        for index in self.live_indexes():
            self.terminate(index, grace_s)
        for worker in self.workers.values():
            worker.kill()

    # -- probes ------------------------------------------------------------------------------
    def probe(self, expected_partitions: Iterable[tuple[str, int]]) -> ProbeResult:
        live = self.live()
        ready = bool(live) and all(w.http_status("/health/readiness") == 200 for w in live)
        lags: dict[tuple[str, int], float] = {}
        stalled: list[str] = []
        crashed: list[str] = []
        expected = list(expected_partitions)
        sources = {topic for topic, _ in expected}
        for worker in live:
            status, body = http_get(worker.url + "/metrics")
            if status == 200:
                for tp, lag in parse_lag(body.decode()).items():
                    lags[tp] = min(lag, lags.get(tp, lag))
            status, body = http_get(worker.url + "/health/detailed")
            if body:
                try:
                    components = json.loads(body)["components"]
                except (ValueError, KeyError):
                    continue
                stalled += components["consumer"]["stalledPartitions"]
                crashed += components["agents"]["crashed"]
        source_stalled = [s for s in stalled if s.rpartition("[")[0] in sources]
        other_stalled = sorted(set(stalled) - set(source_stalled))
        missing = [tp for tp in expected if tp not in lags]
        lagging = {tp: lags[tp] for tp in expected if lags.get(tp, 0) > CAUGHT_UP_LAG}
        total = sum(lags.get(tp, 0) for tp in expected)
        return ProbeResult(ready, missing, lagging, source_stalled, crashed, total, other_stalled)

    def expected_partitions(self) -> list[tuple[str, int]]:
        partitions = self.settings.topic_partitions
        return [(t, p) for t in self.source_topics() for p in range(partitions)]

    def wait_resumed(
        self, timeout_s: float, step_s: float = 0.25
    ) -> tuple[float | None, ProbeResult]:
        """Seconds until the fleet is resumed (None if not within `timeout_s`), last probe."""
        started = time.monotonic()
        expected = self.expected_partitions()
        last = self.probe(expected)
        while time.monotonic() - started < timeout_s:
            if last.resumed:
                return time.monotonic() - started, last
            time.sleep(step_s)
            last = self.probe(expected)
        return (time.monotonic() - started if last.resumed else None), last

    def wait_quiet(self, timeout_s: float) -> tuple[bool, ProbeResult]:
        """All partitions assigned with zero lag, twice in a row one second apart."""
        deadline = time.monotonic() + timeout_s
        expected = self.expected_partitions()
        streak = 0
        last = self.probe(expected)
        while time.monotonic() < deadline:
            quiet = last.ready and not last.missing and last.total_lag == 0
            streak = streak + 1 if quiet else 0
            if streak >= 2:
                return True, last
            time.sleep(1.0)
            last = self.probe(expected)
        return False, last
