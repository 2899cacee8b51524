"""The fault driver: a realistic stream, faults injected at random moments, then the verifier.

    python -m tests.reliability.chaos --long            # ~10-15 min, 20 kill -9s, records
    python -m tests.reliability.chaos --short           # what the pytest version runs
    python -m tests.reliability.chaos --long --record docs/reliability.md

Everything runs on loopback: its own embedded broker on a free port (unless `broker_port` is
given), a schema-registry stand-in, at most three workers. Bounded in count (events, faults)
and time (`max_duration_s`, every wait has a timeout). Prints the pass figures and exits
non-zero when one of them does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from app.broker import EmbeddedBroker, free_port
from app.producer import OmsProducer
from app.serde import build_serde
from tests.reliability import faults
from tests.reliability.blotter_faults import blotter_clients
from tests.reliability.cluster import Fleet
from tests.reliability.reference import CatalogDecoder, Expected
from tests.reliability.registry_standin import RegistryStandIn
from tests.reliability.verifier import Report, expected_state, verify
from tests.reliability.workload import ChaosStream

KILL9_RESUME_TARGET_S = 15.0
VERIFY_TIMEOUT_S = 300.0
MIN_FLOW_DURING_FAULT_S = 12.0


@dataclass(frozen=True)
class ChaosPlan:
    """How much stream and how many faults; every number bounds the run."""

    events: int
    rate: float  # messages per second
    poison: int
    kills: int
    sigterms: int
    wipes: int
    outages: int
    scale_downs: int  # 0, 1 (3 -> 2) or 2 (3 -> 2 -> 1)
    seed: int = 11
    outage_s: float = 8.0
    quiet_timeout_s: float = 120.0
    max_duration_s: float = 900.0


# Both runs scale 1 -> 2 -> 3 -> 2 -> 1; scale-down relies on a cleanly stopped static member
# leaving the group (docs/adr/0004-leave-group-on-shutdown.md).
SHORT = ChaosPlan(
    events=2000,
    rate=30.0,
    poison=18,
    kills=2,
    sigterms=1,
    wipes=1,
    outages=1,
    scale_downs=2,
    max_duration_s=300.0,
)
LONG = ChaosPlan(
    events=25000,
    rate=50.0,
    poison=60,
    kills=20,
    sigterms=4,
    wipes=2,
    outages=2,
    scale_downs=2,
    max_duration_s=1200.0,
)


class BackgroundFault(Protocol):
    """A fault that runs for the whole stream beside the others and checks itself at quiet
    against the reference model's expected state (the blotter clients of
    `blotter_faults.py`)."""

    async def start(self, fleet: Fleet) -> None: ...

    async def stop(self) -> None: ...

    async def problems(self, fleet: Fleet, expected: Expected) -> list[str]: ...

    def summary(self) -> str: ...


@dataclass
class ChaosResult:
    plan: ChaosPlan
    report: Report | None
    faults: list[faults.FaultResult]
    produced: int
    duration_s: float
    quiet: bool
    problems: list[str] = field(default_factory=list)
    background: list[tuple[str, list[str]]] = field(default_factory=list)  # summary, problems

    def background_problems(self) -> list[str]:
        return [problem for _, problems in self.background for problem in problems]

    def kill9_resume(self) -> list[float]:
        return [f.resume_s for f in self.faults if f.kind == "kill-9" and f.resume_s is not None]

    def failures(self) -> list[str]:
        failed = list(self.problems) + self.background_problems()
        failed += [
            f"fault {f.kind} w{f.worker} at {f.at_s:.0f}s: {'; '.join(f.problems)}"
            for f in self.faults
            if not f.ok
        ]
        if not self.quiet:
            failed.append("the system never became quiet (lag 0 on every partition)")
        if self.report is None:
            failed.append("no verification report")
        else:
            failed += self.report.failures()
        slow = [s for s in self.kill9_resume() if s > KILL9_RESUME_TARGET_S]
        if slow:
            failed.append(f"kill -9 resume over {KILL9_RESUME_TARGET_S:.0f} s: {slow}")
        return failed

    def figures_text(self) -> str:
        lines = [f"events produced: {self.produced} in {self.duration_s:.0f} s"]
        if self.report is not None:
            lines.append(
                "figures: " + " ".join(f"{k}={v}" for k, v in self.report.figures().items())
            )
        resumes = self.kill9_resume()
        if resumes:
            lines.append(
                f"kill -9 -> resumed: n={len(resumes)} median={statistics.median(resumes):.1f}s "
                f"max={max(resumes):.1f}s (target <= {KILL9_RESUME_TARGET_S:.0f}s)"
            )
        others = [f.resume_s for f in self.faults if f.resume_s is not None]
        if others:
            lines.append(f"slowest resume after any fault: {max(others):.1f}s (bound 60s)")
        stops = [f.stop_s for f in self.faults if f.stop_s is not None]
        if stops:
            lines.append(
                f"SIGTERM -> exit: max {max(stops):.1f}s (grace {faults.SIGTERM_GRACE_S:.0f}s)"
            )
        lines += ["faults:", *("  " + f.line() for f in self.faults)]
        lines += ["background:", *("  " + summary for summary, _ in self.background)]
        failures = self.failures()
        lines.append("RESULT: " + ("PASS" if not failures else f"FAIL ({len(failures)})"))
        lines += ["  - " + f[:1500] for f in failures]
        return "\n".join(lines)


async def _produce(
    fleet: Fleet,
    stream: ChaosStream,
    rate: float,
    deadline: float,
    counter: list[int],
    allowed: list[int],
) -> None:
    """Produce the stream at `rate` (messages/s) until it ends or the deadline passes, never
    past `allowed[0]` messages: the fault loop holds the stream at the next fault's moment
    until the current fault is over, so no fault ever runs after the stream has run dry."""
    serde = build_serde(None)
    next_at = time.monotonic()
    async with OmsProducer(fleet.settings, serde) as producer:
        for n, message in enumerate(stream.messages(), start=1):
            while n > allowed[0] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await producer.send(
                producer.topic(message.topic_attr),
                message.key,
                message.value,
                headers=message.headers,
            )
            counter[0] = n
            next_at = max(next_at + 1 / rate, time.monotonic() - 1.0)
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() > deadline:
                break
        await producer.flush()


def _moments(rng: random.Random, events: int, count: int) -> list[int]:
    """`count` random stream positions between 5% and 85%, one in each equal slice, so faults
    are spread over the stream instead of bunching."""
    low, high = events // 20, events * 17 // 20
    width = (high - low) / max(count, 1)
    return [int(low + width * (i + rng.random())) for i in range(count)]


async def run_chaos(
    plan: ChaosPlan,
    run_dir: Path,
    broker_port: int | None = None,
    background: list[BackgroundFault] | None = None,
    log: Callable[[str], None] = print,
) -> ChaosResult:
    """Run one plan end to end and verify. Never raises for a failed check: read `failures()`.
    Without `background`, the blotter clients of `blotter_faults.py` run beside the faults."""
    started = time.monotonic()
    deadline = started + plan.max_duration_s
    rng = random.Random(plan.seed)
    if background is None:
        background = list(blotter_clients(random.Random(plan.seed + 1)))
    checked: list[tuple[str, list[str]]] = []
    broker = None
    if broker_port is None:
        broker_port = free_port()
        broker = EmbeddedBroker(broker_port, run_dir / "broker", log_path=run_dir / "broker.log")
        run_dir.mkdir(parents=True, exist_ok=True)
        broker.start()
    registry = RegistryStandIn()
    registry.start()
    business_date = dt.date(2026, 11, 20)
    fleet = Fleet.create(
        run_dir,
        broker_port,
        uuid.uuid4().hex[:8],
        {"SCHEMA_REGISTRY_URL": registry.url, "BUSINESS_DATE": business_date.isoformat()},
    )
    stream = ChaosStream(
        build_serde(None),
        seed=plan.seed,
        business_date=business_date,
        total=plan.events,
        poison=plan.poison,
    )
    ctx = faults.FaultContext(fleet, registry, stream, rng, started, plan.outage_s, log=log)
    results: list[faults.FaultResult] = []
    produced = [0]
    problems: list[str] = []
    report = None
    quiet = False
    try:
        first = faults.FaultResult("start", 0, 0.0)
        await asyncio.to_thread(faults.start_worker, ctx, first, 0)
        if not first.ok:
            problems += first.problems
            return ChaosResult(plan, None, results, 0, time.monotonic() - started, False, problems)
        for extra in background:
            await extra.start(fleet)
        kinds = faults.schedule(
            rng,
            kills=plan.kills,
            sigterms=plan.sigterms,
            wipes=plan.wipes,
            outages=plan.outages,
            scale_downs=plan.scale_downs,
        )
        # Random moments, by position in the stream: a slow fault delays the next one instead
        # of letting the stream run dry before the last faults.
        moments = _moments(rng, plan.events, len(kinds))
        flow = int(plan.rate * MIN_FLOW_DURING_FAULT_S)  # the stream keeps going meanwhile
        holds = [
            min(plan.events, max(nxt, now + flow))
            for now, nxt in zip(moments, [*moments[1:], plan.events], strict=True)
        ]
        allowed = [moments[0] if moments else plan.events]
        producer = asyncio.create_task(
            _produce(fleet, stream, plan.rate, deadline, produced, allowed)
        )
        for kind, moment, hold in zip(kinds, moments, holds, strict=True):
            while produced[0] < moment and not producer.done():
                await asyncio.sleep(0.1)
            if time.monotonic() > deadline:
                problems.append(f"time bound reached before fault {kind}")
                allowed[0] = plan.events
                break
            allowed[0] = hold  # the stream flows on while this fault runs
            index = faults.target_worker(ctx, kind)
            result = await asyncio.to_thread(faults.FAULTS[kind], ctx, index)
            results.append(result)
            log(f"[{produced[0]} produced] {result.line()}")
        allowed[0] = plan.events
        try:
            await asyncio.wait_for(producer, timeout=max(1.0, deadline - time.monotonic()) + 10)
        except TimeoutError:  # verify what was produced anyway
            problems.append(f"time bound of {plan.max_duration_s:.0f} s cut the stream")
        quiet, probe = await asyncio.to_thread(fleet.wait_quiet, plan.quiet_timeout_s)
        if not quiet:
            problems.append(f"not quiet after {plan.quiet_timeout_s:.0f} s: {probe.summary()}")
        decoder = CatalogDecoder(registry.catalog)
        expected = await asyncio.wait_for(
            expected_state(fleet.settings.bootstrap_servers, fleet.settings.topics, decoder),
            timeout=VERIFY_TIMEOUT_S,
        )
        for extra in background:
            await extra.stop()
            found = await extra.problems(fleet, expected)
            checked.append((extra.summary(), found))
        report = await asyncio.wait_for(
            verify(
                fleet.settings.bootstrap_servers,
                fleet.settings.topics,
                [w.url for w in fleet.live()],
                decoder,
                expected=expected,
            ),
            timeout=VERIFY_TIMEOUT_S,
        )
    except TimeoutError:
        problems.append(f"time bound of {plan.max_duration_s:.0f} s reached")
    finally:
        for extra in background:
            await extra.stop()  # idempotent: a run cut short leaves no client running
        await asyncio.to_thread(fleet.stop_all)
        registry.stop()
        if broker is not None:
            broker.stop()
    return ChaosResult(
        plan, report, results, produced[0], time.monotonic() - started, quiet, problems, checked
    )


def record(result: ChaosResult, path: Path, command: str) -> None:
    """Replace the 'Last run' section of docs/reliability.md with this run's figures."""
    marker = "## Last run"
    text = path.read_text() if path.exists() else ""
    head = text.split(marker)[0].rstrip() + "\n\n" if marker in text else text
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"{marker}\n\n{today}, `{command}`, plan: {result.plan}\n\n```\n"
        f"{result.figures_text()}\n```\n"
    )
    path.write_text(head + body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--long", action="store_true", help="the long run (20 kill -9s)")
    size.add_argument("--short", action="store_true", help="the short run (default)")
    parser.add_argument("--events", type=int, help="override the number of messages")
    parser.add_argument("--kills", type=int, help="override the number of kill -9s")
    parser.add_argument("--seed", type=int, help="override the random seed")
    parser.add_argument("--record", type=Path, help="write the figures to this markdown file")
    parser.add_argument("--run-dir", type=Path, help="keep logs and data here")
    args = parser.parse_args(argv)
    plan = LONG if args.long else SHORT
    overrides = {
        k: v
        for k, v in (("events", args.events), ("kills", args.kills), ("seed", args.seed))
        if v is not None
    }
    plan = replace(plan, **overrides)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="chaos-"))
    print(f"chaos: {plan}\nlogs: {run_dir}", flush=True)
    result = asyncio.run(run_chaos(plan, run_dir, log=lambda s: print(s, flush=True)))
    print(result.figures_text(), flush=True)
    if args.record:
        given = list(argv or sys.argv[1:])
        if "--run-dir" in given:  # a local path: not part of the recorded command
            at = given.index("--run-dir")
            del given[at : at + 2]
        command = "python -m tests.reliability.chaos " + " ".join(given)
        record(result, args.record, command.strip())
    return 0 if not result.failures() else 1


if __name__ == "__main__":
    raise SystemExit(main())
