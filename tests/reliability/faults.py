"""The faults, one function each, and the schedule that orders them.

Each fault acts on the fleet (blocking calls: run it in a thread), then waits until every
partition is fetching again and caught up, and returns what it measured. Timings are taken from
the moment the fault is injected, so "resume" includes the restart, the rejoin, table recovery
and the catch-up on whatever arrived meanwhile.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.reliability.cluster import Fleet
from tests.reliability.registry_standin import RegistryStandIn
from tests.reliability.workload import ChaosStream

RESUME_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 90.0
SIGTERM_GRACE_S = 20.0


@dataclass
class FaultResult:
    """What one fault did and how long the system took to get over it."""

    kind: str
    worker: int
    at_s: float
    resume_s: float | None = None
    ready_s: float | None = None
    stop_s: float | None = None
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        status = "ok" if self.ok else "FAIL " + "; ".join(self.problems)
        return (
            f"t={self.at_s:6.1f}s {self.kind:<16} w{self.worker} stop={fmt(self.stop_s)} "
            f"ready={fmt(self.ready_s)} resume={fmt(self.resume_s)} {self.note} [{status}]"
        )


@dataclass
class FaultContext:
    """What a fault may touch."""

    fleet: Fleet
    registry: RegistryStandIn
    stream: ChaosStream
    rng: random.Random
    started: float
    outage_s: float = 8.0
    next_alias_base: int = 1000
    log: Callable[[str], None] = print

    def since_start(self) -> float:
        return time.monotonic() - self.started


def resume(ctx: FaultContext, result: FaultResult, t0: float) -> None:
    resumed, probe = ctx.fleet.wait_resumed(RESUME_TIMEOUT_S)
    if resumed is None:
        result.problems.append(f"not resumed within {RESUME_TIMEOUT_S:.0f} s: {probe.summary()}")
        result.note += f" missing={probe.missing[:4]}"
    else:
        result.resume_s = time.monotonic() - t0
    if probe.crashed:
        result.problems.append(f"crashed agents {probe.crashed}")


def start_worker(ctx: FaultContext, result: FaultResult, index: int) -> None:
    worker = ctx.fleet.start(index)
    started = time.monotonic()
    try:
        worker.wait_ready(READY_TIMEOUT_S)
        result.ready_s = time.monotonic() - started
    except AssertionError as exc:
        result.problems.append(f"worker {index} not ready: {str(exc)[:300]}")


def terminate(ctx: FaultContext, result: FaultResult, index: int) -> None:
    result.stop_s, result.exit_code = ctx.fleet.terminate(index, SIGTERM_GRACE_S)
    if result.exit_code is None:
        result.problems.append(f"SIGTERM shutdown exceeded {SIGTERM_GRACE_S:.0f} s (killed)")
    elif result.exit_code != 0:
        result.problems.append(f"SIGTERM exit code {result.exit_code}")


def kill9(ctx: FaultContext, index: int) -> FaultResult:
    """kill -9 at a random moment, restart after a short random delay (a pod restart)."""
    t0 = time.monotonic()
    result = FaultResult("kill-9", index, ctx.since_start())
    ctx.fleet.kill(index)
    time.sleep(ctx.rng.uniform(0.0, 1.0))
    start_worker(ctx, result, index)
    resume(ctx, result, t0)
    return result


def sigterm(ctx: FaultContext, index: int) -> FaultResult:
    """SIGTERM: the shutdown must complete within the grace period; then restart."""
    t0 = time.monotonic()
    result = FaultResult("sigterm", index, ctx.since_start())
    terminate(ctx, result, index)
    start_worker(ctx, result, index)
    resume(ctx, result, t0)
    return result


def scale_up(ctx: FaultContext, index: int) -> FaultResult:
    t0 = time.monotonic()
    result = FaultResult("scale-up", index, ctx.since_start())
    result.note = f"-> {len(ctx.fleet.live()) + 1} workers"
    start_worker(ctx, result, index)
    resume(ctx, result, t0)
    return result


def scale_down(ctx: FaultContext, index: int) -> FaultResult:
    """Stop a worker for good; its partitions must move to the others. If they never do, the
    failure is recorded and the worker is started again so the run can go on."""
    t0 = time.monotonic()
    result = FaultResult("scale-down", index, ctx.since_start())
    result.note = f"-> {len(ctx.fleet.live()) - 1} workers"
    terminate(ctx, result, index)
    resume(ctx, result, t0)
    if result.resume_s is None:
        start_worker(ctx, result, index)
        after, probe = ctx.fleet.wait_resumed(RESUME_TIMEOUT_S)
        result.note += (
            f" (remedy: worker restarted, resumed in {after:.1f}s)"
            if after
            else f" (remedy: worker restarted, still not resumed: {probe.summary()})"
        )
    return result


def wipe_state(ctx: FaultContext, index: int) -> FaultResult:
    """Delete the worker's local RocksDB tables; it must rebuild them from the changelogs."""
    t0 = time.monotonic()
    result = FaultResult("wipe-rocksdb", index, ctx.since_start())
    ctx.fleet.kill(index)
    removed = ctx.fleet.wipe_state(index)
    result.note = f"{removed} files deleted"
    start_worker(ctx, result, index)
    resume(ctx, result, t0)
    return result


def registry_outage(ctx: FaultContext, index: int) -> FaultResult:
    """The registry answers 503 for a while. Messages framed with schema ids no worker has seen
    are produced meanwhile, and worker `index` is restarted (empty schema cache). Nothing may be
    dead-lettered because of it (checked by the verifier) and processing must resume after."""
    result = FaultResult("registry-outage", index, ctx.since_start())
    catalog = ctx.registry.catalog
    aliases = {
        subject: catalog.add_alias(ctx.next_alias_base + schema_id, subject)
        for subject, schema_id in catalog.latest.items()
    }
    ctx.next_alias_base += 100
    before = ctx.registry.count(503)
    aliased_before = ctx.stream.counts.aliased
    ctx.registry.outage(True)
    ctx.stream.alias_ids = aliases
    outage_started = time.monotonic()
    try:
        terminate(ctx, result, index)
        ctx.fleet.start(index)  # readiness is waited for after the outage (see below)
        time.sleep(max(0.0, ctx.outage_s - (time.monotonic() - outage_started)))
    finally:
        ctx.stream.alias_ids = None
        ctx.registry.outage(False)
    t0 = time.monotonic()
    served_503 = ctx.registry.count(503) - before
    aliased = ctx.stream.counts.aliased - aliased_before
    result.note = (
        f"{t0 - outage_started:.1f}s down, {served_503} requests got 503, "
        f"{aliased} messages with new schema ids"
    )
    if served_503 == 0 or aliased == 0:
        result.problems.append("the outage was not exercised (no 503 served or no new ids)")
    try:
        ctx.fleet.workers[index].wait_ready(READY_TIMEOUT_S)
        result.ready_s = time.monotonic() - outage_started  # from its restart, in the outage
    except AssertionError as exc:
        result.problems.append(f"worker {index} not ready after the outage: {str(exc)[:300]}")
    resume(ctx, result, t0)
    return result


FAULTS: dict[str, Callable[[FaultContext, int], FaultResult]] = {
    "kill9": kill9,
    "sigterm": sigterm,
    "scale_up": scale_up,
    "scale_down": scale_down,
    "wipe": wipe_state,
    "registry_outage": registry_outage,
}


def schedule(
    rng: random.Random, *, kills: int, sigterms: int, wipes: int, outages: int, scale_downs: int
) -> list[str]:
    """Fault kinds in order: scale 1 -> 2 -> 3 early, the random faults in a random order
    (spread over the stream), then `scale_downs` steps of 3 -> 2 -> 1 at the end."""
    middle = ["kill9"] * kills + ["sigterm"] * sigterms + ["wipe"] * wipes
    middle += ["registry_outage"] * outages
    rng.shuffle(middle)
    first_third = max(1, len(middle) // 3)
    plan = ["scale_up", *middle[:first_third], "scale_up", *middle[first_third:]]
    return plan + ["scale_down"] * min(scale_downs, 2)


def target_worker(ctx: FaultContext, kind: str) -> int:
    """Which worker a fault hits: a new index to scale up, the highest to scale down, a random
    live one otherwise."""
    live = sorted(ctx.fleet.live_indexes())
    if kind == "scale_up":
        return next(i for i in range(len(live) + 1) if i not in live)
    if kind == "scale_down":
        return live[-1]
    return ctx.rng.choice(live)
