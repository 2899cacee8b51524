"""Shared plumbing of the benchmark scripts: broker, worker subprocesses, fast producing,
process CPU/RSS readings, `/metrics` scraping and the printed tables.

Why figures come from the processing window: a worker spends its first seconds joining the
group and recovering tables. Rates and CPU per event are taken between the first and the last
observation of progress (counters or offsets), so start-up cost is reported apart (`ready s`)
instead of diluting throughput. Every pipeline (the app and the baselines) is measured the same
way, from its own process, so ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.routing import owner_partition
from app.broker import EmbeddedBroker, create_topics, free_port
from tests.conftest import Worker

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.2


# -- the machine and the processes ----------------------------------------------------------------
def machine_info() -> dict[str, str]:
    """What a reader needs to compare figures across machines."""
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu model": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load avg (1/5 min)": "/".join(f"{x:.1f}" for x in os.getloadavg()[:2]),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, all threads (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def own_cpu_seconds() -> float:
    return time.process_time()


# -- broker and workers ---------------------------------------------------------------------------
@dataclass
class Bench:
    """One benchmark run: a scratch directory, an embedded broker and a unique topic prefix."""

    base: Path
    broker: EmbeddedBroker
    tag: str
    partitions: int
    workers: list[Worker] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def prefix(self) -> str:
        return f"b{self.tag}-"

    @property
    def broker_pid(self) -> int:
        assert self.broker.process is not None
        return self.broker.process.pid

    def topic(self, name: str) -> str:
        return self.prefix + name

    def worker(self, n: int = 0, app_id: str | None = None, **extra_env: str) -> Worker:
        """A worker subprocess (not started) with its own data dir and web port."""
        data = self.base / f"w{n}"
        data.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "EMBEDDED_BROKER_PORT": str(self.broker.port),
            "APP_ID": app_id or f"bench-{self.tag}",
            "TOPIC_PREFIX": self.prefix,
            "TOPIC_PARTITIONS": str(self.partitions),
            "AUTH_MODE": "disabled",
            "DATA_DIR": str(data),
            "WEB_PORT": str(free_port()),
            "CONSUMER_GROUP_INSTANCE_ID": f"bench-{self.tag}-{n}",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        env.pop("BROKER_URL", None)
        worker = Worker(env, data, self.base / f"w{n}.log")
        self.workers.append(worker)
        return worker

    def create_topics(self, names: Iterable[str], compacted: Iterable[str] = ()) -> None:
        asyncio.run(create_topics(self.bootstrap, list(names), self.partitions, compacted))


@contextlib.contextmanager
def bench_run(partitions: int, keep: bool = False) -> Iterator[Bench]:
    """A broker on a free loopback port for the duration of the block; everything removed after
    (unless `keep`)."""
    import signal

    # SIGTERM (e.g. from `timeout`) must still stop the broker and workers and remove the data.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="blotter-bench-"))
    broker = EmbeddedBroker(free_port(), base / "broker", log_path=base / "broker.log")
    broker.start()
    run = Bench(base, broker, uuid.uuid4().hex[:6], partitions)
    try:
        yield run
    finally:
        for worker in run.workers:
            worker.kill()
        broker.stop()
        if keep:
            print(f"(scratch data kept in {base})", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


# -- producing ------------------------------------------------------------------------------------
def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default (murmur2) placement, which the app's tables rely on."""
    return owner_partition(key, partitions)


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    partitions: int,
    timestamps_ms: Sequence[int] | None = None,
) -> float:
    """Produce (key, value) records with `send_batch`, placed by murmur2; return seconds taken.

    Per-partition order is the order of `records`, which the version rule's expectations in the
    scenarios depend on.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20, acks=1
    )
    await producer.start()
    started = time.perf_counter()
    try:
        batches: dict[int, Any] = {}
        pending: list[asyncio.Future[Any]] = []

        async def flush(part: int) -> None:
            batch = batches.pop(part, None)
            if batch is not None and batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=part))

        for i, (key, value) in enumerate(records):
            part = partition_of(key, partitions)
            batch = batches.get(part)
            if batch is None:
                batch = batches[part] = producer.create_batch()
            stamp = timestamps_ms[i] if timestamps_ms is not None else None
            if batch.append(key=key, value=value, timestamp=stamp) is None:
                await flush(part)
                batch = batches[part] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=stamp) is None:
                    raise ValueError(f"record of {len(value)} bytes exceeds the batch size")
        for part in list(batches):
            await flush(part)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer.topics()
            parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def records_since(
    bootstrap: str, topic: str, start: dict[int, int]
) -> tuple[int, int]:
    """(records, bytes of keys and values) in `topic` from the `start` offsets to its end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    count = size = 0
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer.topics()
            parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        todo = {tp: end for tp, end in ends.items() if end > start.get(tp.partition, 0)}
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, start.get(tp.partition, 0))
        while todo:
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                for message in messages:
                    if message.offset < todo.get(tp, 0):
                        count += 1
                        size += len(message.key or b"") + len(message.value or b"")
                if messages and messages[-1].offset + 1 >= todo.get(tp, 0):
                    todo.pop(tp, None)
    finally:
        await consumer.stop()
    return count, size


# -- observing a worker ---------------------------------------------------------------------------
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(url: str, timeout: float = 2.0) -> Samples:
    """`/metrics` as {sample name: {sorted label pairs: value}}; {} when unreachable."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url + "/metrics", timeout=timeout) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    """Sum of a sample over the series whose labels include `labels`."""
    total = 0.0
    for series, value in samples.get(name, {}).items():
        have = dict(series)
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total


def histogram(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) buckets of a histogram series, sorted by bound."""
    buckets: dict[float, float] = {}
    for series, value in samples.get(name + "_bucket", {}).items():
        have = dict(series)
        if all(have.get(k) == v for k, v in labels.items()):
            bound = float(have["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
    return sorted(buckets.items())


def bucket_delta(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, count
    return lower


@dataclass
class Window:
    """Progress of one pipeline between its first and last observed progress."""

    events: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    ready_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.events * 1e6 if self.events else float("nan")

    @property
    def broker_cpu_us(self) -> float:
        seconds = self.extra.get("broker_cpu_s")
        return seconds / self.events * 1e6 if self.events and seconds is not None else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "peak_rss_mb": self.peak_rss_mb,
            "ready_s": self.ready_s,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Window:
        return cls(
            data["events"],
            data["seconds"],
            data["cpu_seconds"],
            data["peak_rss_mb"],
            data.get("ready_s"),
            dict(data.get("extra", {})),
        )


def wait_settled(workers: Sequence[Worker], timeout: float, stable_polls: int = 3) -> None:
    """Wait until every worker is ready, not rebalancing and has partitions, for
    `stable_polls` consecutive looks 0.5 s apart: the group has stopped rebalancing."""
    deadline = time.monotonic() + timeout
    stable = 0
    while stable < stable_polls:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers did not settle within {timeout} s")
        stable = stable + 1 if all(_settled(worker) for worker in workers) else 0
        time.sleep(0.5)


def _settled(worker: Worker) -> bool:
    try:
        with urllib.request.urlopen(worker.url + "/health", timeout=2) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    components = body.get("components", {})
    return (
        body.get("status") == "UP"
        and not components.get("worker", {}).get("rebalancing", True)
        and components.get("consumer", {}).get("assignedPartitions", 0) > 0
    )


def watch_progress(
    pid: int | Sequence[int],
    progress: Callable[[], int | None],
    target: int,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    broker_pid: int | None = None,
) -> Window:
    """Poll `progress()` (events done so far) until it reaches `target`; measure rate and CPU of
    process `pid` (summed over the processes when several, with their peak RSS summed; and of
    the broker, when given) between the first poll that saw progress and the one that saw
    `target`."""
    pids = [pid] if isinstance(pid, int) else list(pid)
    started = time.monotonic()
    deadline = started + timeout
    first: tuple[float, float, int, float] | None = None
    done = 0
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the process under test exited")
        done = progress() or 0
        now, cpu = time.perf_counter(), sum(cpu_seconds(p) for p in pids)
        broker = cpu_seconds(broker_pid) if broker_pid else 0.0
        if done and first is None:
            first = (now, cpu, done, broker)
        if done >= target:
            if first is None:  # everything was done before the first look
                first = (now, cpu, 0, broker)
            t0, c0, d0, b0 = first
            window = Window(done - d0, now - t0, cpu - c0, sum(peak_rss_mb(p) for p in pids))
            window.extra["broker_cpu_s"] = broker - b0
            return window
        # Each look costs the worker a /metrics rendering: look less often as the run grows,
        # keeping the window's error near 1% of its length.
        time.sleep(min(1.0, max(POLL_S, 0.01 * (time.monotonic() - started))))
    raise TimeoutError(f"progress stuck at {done} of {target} after {timeout} s")


def run_baseline(python: str, args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run `python -m bench.baselines ARGS` and return the JSON it prints last."""
    proc = subprocess.run(
        [python, "-m", "bench.baselines", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"baseline {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def quix_python() -> str | None:
    """An interpreter with quixstreams installed: QUIX_PYTHON, or this one if it has it.

    Quix Streams pins confluent-kafka below the version the app requires, so it usually lives
    in a separate virtualenv (see docs/benchmarks.md)."""
    configured = os.environ.get("QUIX_PYTHON")
    if configured:
        return configured
    try:
        import quixstreams  # noqa: F401
    except ImportError:
        return None
    return sys.executable


# -- printing -------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print and return a Markdown table (pasteable into docs/benchmarks.md)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [f"\n### {title}\n", line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells[1:]]
    text = "\n".join(out)
    print(text, flush=True)
    return text


def print_machine() -> None:
    """The machine line every table is read with. A load average near or above the CPU count
    means other work competed for the cores: rates are then low and noisy, while CPU us/event
    (this process's own CPU time) is much less affected."""
    info = machine_info()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(
            f"WARNING: load average {load:.1f} before the run: other processes compete for "
            "the CPUs; compare CPU us/event rather than rates",
            flush=True,
        )


def print_load_after() -> None:
    print(f"load avg after the run (1 min): {os.getloadavg()[0]:.1f}", flush=True)


def note(message: str) -> None:
    """Progress lines go to stderr so stdout stays the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- profiling ------------------------------------------------------------------------------------
class PySpy:
    """`py-spy record` of a running process into collapsed stacks, summarised as the frames with
    the most own and total samples. py-spy is a bench-only tool: found on PATH or beside the
    running interpreter.

    `gil=True` keeps only samples of the thread holding the GIL, i.e. where Python CPU goes.
    Without it, a thread waiting to re-take the GIL after a socket write (Faust's consumer runs
    in its own thread) is sampled as busy inside `write`, which hides the CPU profile."""

    def __init__(
        self, pid: int, out: Path, duration: int = 60, rate: int = 100, gil: bool = True
    ) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "-o",
                str(out),
                "-r",
                str(rate),
                "-d",
                str(duration),
                "--nonblocking",
                *(["--gil"] if gil else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def summary(self, top: int = 25) -> str:
        if not self.out.exists():
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            return f"(py-spy wrote no profile: {err.strip()[:500]})"
        return summarize_collapsed(self.out.read_text(), top)


def _short(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (file.py:12)`, stripping site-packages noise."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif len(parts) > 2:
        parts = parts[-2:]
    return f"{name} ({'/'.join(parts)}:{line})" if path else frame


GENERIC_FRAMES = (
    "runpy",
    "click/",
    "cli/base.py",
    "mode/worker.py",
    "faust/__main__.py",
    "threading.py",
    "mode/threads.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
)


def component(frame: str) -> str:
    """The library (or project package) a frame belongs to. py-spy names files relative to
    their import root (`aiokafka/conn.py`, `app/serde.py`, `selectors.py`)."""
    where = frame.partition(" (")[2].rstrip(")")
    path = where.rpartition(":")[0] if ":" in where else where
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    if not parts or path.startswith("<"):
        return "other"
    if len(parts) == 1 or parts[0].startswith("python3"):
        return "stdlib"
    if parts[0] in ("app", "agents", "tables", "web"):
        return f"project {parts[0]}/"
    return parts[0]


def summarize_collapsed(text: str, top: int = 25) -> str:
    """Own time per component, own time per function and total (inclusive) time per function,
    as sample shares, from py-spy's raw collapsed-stack output. Frames every stack shares (the
    event loop, click, runpy) are left out of the inclusive table."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    by_component: dict[str, int] = {}
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        raw_frames = stack.split(";")
        frames = [_function(f) for f in raw_frames]
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + count
            part = component(raw_frames[-1])
            by_component[part] = by_component.get(part, 0) + count
        for frame in set(frames):
            if not any(generic in frame for generic in GENERIC_FRAMES):
                total[frame] = total.get(frame, 0) + count
    if not samples:
        return "(no samples)"

    def table(title: str, counts: dict[str, int], limit: int) -> list[str]:
        lines = [f"{title} ({samples:,} samples)", "", "| share | frame |", "|---:|---|"]
        for frame, count in sorted(counts.items(), key=lambda kv: -kv[1])[:limit]:
            lines.append(f"| {100 * count / samples:5.1f}% | {frame} |")
        return [*lines, ""]

    return "\n".join(
        [
            *table("own time by component", by_component, 15),
            *table("own time by function", own, top),
            *table("total (inclusive) time by function", total, top),
        ]
    )


def _function(frame: str) -> str:
    """py-spy frames are `func (file:line)`; aggregate per function by dropping the line."""
    short = _short(frame)
    name, _, where = short.partition(" (")
    file = where.rpartition(":")[0] if where else ""
    return f"{name} ({file})" if file else name
