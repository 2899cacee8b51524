"""Liveness facts Faust does not provide: a responsive loop, no crashed agent, no stalled partition.

Faust has no health endpoint, and its consumer can silently stop fetching after a rebalance bug.
Once a second this monitor samples, for every assigned partition, the high watermark and the last
offset read: a partition with data waiting (lag > 0) whose read offset has not moved for longer
than the stall threshold is *stalled*. Kubernetes restarts a worker whose liveness fails; a
recovering or rebalancing worker is not stalled (it has no assignment, or is not ready yet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from app import metrics

log = logging.getLogger(__name__)

TICK_S = 1.0


@dataclass
class PartitionProgress:
    read_offset: int | None = None
    lag: int = 0
    stalled_since: float | None = None
    reported: bool = False  # the stall was logged with the fetch state


@dataclass
class HealthMonitor:
    """Samples the app once per tick; `status()` says what the health endpoints report."""

    app: Any
    stall_after_s: float = 60.0
    loop_block_limit_s: float = 10.0
    last_tick: float = field(default_factory=time.monotonic)
    loop_delay_s: float = 0.0
    partitions: dict[tuple[str, int], PartitionProgress] = field(default_factory=dict)

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.loop_delay_s = max(0.0, now - before - TICK_S)
            self.last_tick = now
            self.sample(now)

    def sample(self, now: float) -> None:
        consumer = getattr(self.app, "consumer", None)
        if consumer is None or not getattr(self.app, "ready", False):
            return
        try:
            assigned = set(consumer.assignment())
        except Exception:  # consumer not started or being rebalanced
            return
        seen: set[tuple[str, int]] = set()
        read_offsets = getattr(consumer, "_read_offset", {})  # last offset handed to a stream
        for tp in assigned:
            if not self._is_source(tp.topic):
                continue  # changelogs are read only during recovery: their "lag" is not a stall
            key = (tp.topic, tp.partition)
            seen.add(key)
            progress = self.partitions.setdefault(key, PartitionProgress())
            try:
                highwater = consumer.highwater(tp)
            except Exception:
                highwater = None
            read = read_offsets.get(tp) if hasattr(read_offsets, "get") else None
            if highwater is None:
                continue
            lag = max(0, highwater - ((read + 1) if read is not None else 0))
            progress.lag = lag
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
            if read != progress.read_offset or lag == 0:
                progress.read_offset = read
                progress.stalled_since = None
                progress.reported = False
                metrics.mark_partition_fetched(tp.topic, tp.partition)
            elif progress.stalled_since is None:
                progress.stalled_since = now
            elif not progress.reported and now - progress.stalled_since > self.stall_after_s:
                progress.reported = True
                log.warning(
                    "partition %s[%s] stalled: lag %s, read offset %s, fetch state %s",
                    tp.topic, tp.partition, lag, read, fetch_state(consumer, tp),
                )
        for key in set(self.partitions) - seen:
            del self.partitions[key]
            metrics.forget_partition(*key)

    def _is_source(self, topic: str) -> bool:
        """A topic some agent consumes (not a table changelog or Faust's leader topic)."""
        if topic.endswith("-changelog") or "__assignor-__leader" in topic:
            return False
        try:  # the conductor's channels (agents' topics), when available
            channels = self.app.topics._topics
            return any(topic in channel.topics for channel in channels)
        except Exception:
            return True

    def stalled(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        return sorted(
            f"{topic}[{partition}]"
            for (topic, partition), p in self.partitions.items()
            if p.stalled_since is not None and now - p.stalled_since > self.stall_after_s
        )

    def crashed_agents(self) -> list[str]:
        crashed = []
        for name, agent in self.app.agents.items():
            actors = list(getattr(agent, "_actors", ()) or ())
            if any(getattr(x, "crashed", False) for x in (agent, *actors)):
                crashed.append(name)
        return crashed

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        tick_age = now - self.last_tick
        stalled = self.stalled(now)
        crashed = self.crashed_agents()
        loop_ok = tick_age < self.loop_block_limit_s
        return {
            "alive": loop_ok and not stalled and not crashed,
            "ready": bool(getattr(self.app, "ready", False)),
            "components": {
                "eventLoop": {
                    "status": "UP" if loop_ok else "DOWN",
                    "lastTickAgeSeconds": round(tick_age, 3),
                    "delaySeconds": round(self.loop_delay_s, 4),
                },
                "agents": {
                    "status": "DOWN" if crashed else "UP",
                    "count": len(self.app.agents),
                    "crashed": crashed,
                },
                "consumer": {
                    "status": "DOWN" if stalled else "UP",
                    "assignedPartitions": len(self.partitions),
                    "totalLag": sum(p.lag for p in self.partitions.values()),
                    "stalledPartitions": stalled,
                    "stallThresholdSeconds": self.stall_after_s,
                },
                "worker": {
                    "status": "UP" if getattr(self.app, "ready", False) else "DOWN",
                    "rebalancing": bool(getattr(self.app, "rebalancing", False)),
                },
            },
        }


def fetch_state(consumer: Any, tp: Any) -> dict[str, Any]:
    """Where a partition's records are held up, for the stall warning: Faust's flow-control
    sets (active, paused, buffer-full) and the client's fetch state (position, paused,
    records fetched but not yet taken). Best effort: private attributes of Faust/aiokafka."""
    state: dict[str, Any] = {
        "flowActive": getattr(consumer, "flow_active", None),
        "active": tp in (getattr(consumer, "_active_partitions", None) or ()),
        "paused": tp in (getattr(consumer, "_paused_partitions", None) or ()),
        "bufferFull": tp in (getattr(consumer, "_buffered_partitions", None) or ()),
        "committed": getattr(consumer, "_committed_offset", {}).get(tp),
    }
    try:
        from aiokafka.structs import TopicPartition

        client = consumer._thread._ensure_consumer()
        fetcher = client._fetcher
        aiotp = TopicPartition(tp.topic, tp.partition)
        tp_state = fetcher._subscriptions.subscription.assignment.state_value(aiotp)
        state.update(
            clientPosition=tp_state._position,
            clientPaused=tp_state.paused,
            clientHighwater=tp_state.highwater,
            clientBuffered=aiotp in fetcher._records,
            clientInFlight=sorted(fetcher._in_flight),
        )
    except Exception as exc:  # another transport, or the internals changed
        state["client"] = f"unavailable: {type(exc).__name__}"
    return state
