"""Operator commands: `faust -A app.main simulate ...` (and more as the product grows)."""

from __future__ import annotations

import asyncio
import time

from faust.cli import option

from app.main import app, serde, settings
from app.producer import OmsProducer
from app.simulator import OmsSimulator


@app.command(
    option("--rate", type=float, default=200.0, help="events per second"),
    option("--seed", type=int, default=1, help="random seed (same seed, same events)"),
    option("--duration", type=float, default=0.0, help="seconds to run (0 = until Ctrl-C)"),
    option("--count", type=int, default=0, help="events to produce (0 = no limit)"),
    option("--backdated/--no-backdated", default=True, help="include late-booked trades"),
)
async def simulate(
    self: object, rate: float, seed: int, duration: float, count: int, backdated: bool
) -> None:
    """Produce realistic OMS traffic (orders, executions, quotes, trades, prices)."""
    sim = OmsSimulator(seed=seed, backdated=backdated, business_date=settings.business_date)
    sent = 0
    started = time.monotonic()
    async with OmsProducer(settings, serde) as producer:
        for event in sim.events():
            await producer.send_record(event.topic_attr, event.key, event.record, event.value)
            sent += 1
            if count and sent >= count:
                break
            elapsed = time.monotonic() - started
            if duration and elapsed >= duration:
                break
            ahead = sent / rate - elapsed if rate > 0 else 0
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    print(f"simulator produced {sent} events in {time.monotonic() - started:.1f} s", flush=True)


@app.command(
    option("--topic", type=str, required=True, help="input topic whose DLQ to replay"),
    option("--limit", type=int, default=0, help="replay at most this many (0 = all)"),
)
async def replay_dlq(self: object, topic: str, limit: int) -> None:
    """Re-submit dead-lettered messages of TOPIC (after a fix) to TOPIC.

    Progress is committed in a consumer group of its own, so running the command twice does
    not re-submit a message twice; the version rule makes a re-submitted version that was
    already applied a counted duplicate, so each message is applied at most once.
    """
    from app.dlq_replay import replay_dead_letters

    count = await replay_dead_letters(settings, topic, limit or None)
    print(f"re-submitted {count} messages from {topic}-dlq to {topic}", flush=True)
