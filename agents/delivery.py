"""Acknowledging an event only once it was really processed.

Faust acknowledges the event an agent is working on when the agent is interrupted: the stream's
`finally` acks it when the worker stops (SIGTERM) or the agent is cancelled. The offset is then
committed although the handler never finished — e.g. while it was waiting out a schema-registry
outage — and the message is lost (found by the reliability harness: a trade and a quote request
lost after a restart during a registry outage). Holding one extra reference on the message while
the handler runs keeps that final ack from happening: the offset is not committed, and the
message is redelivered after the restart. An unexpected error in a handler dead-letters the
message (stage "apply") instead of crashing the agent or silently acknowledging it.

The handler runs under an ownership claim on the event's partition (`app.ownership`), taken
once no rebalance is in progress: when the partition is revoked before or while it runs, it
writes nothing and the message stays unacknowledged, exactly like an interruption; the
partition's new owner processes it.

A `TransientError` (registry or broker outage) is never the message's fault: the handler is run
again, with backoff, until the dependency answers. Handlers therefore raise it only before their
commit point (decoding, resolving the output schemas), where running again is a clean redo.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT

from app import metrics, ownership
from app.errors import PartitionRevoked, PoisonMessage
from app.faust_fixes import hand_over_buffered
from app.logs import bind_context, reset_context
from app.retry import retry_transient

log = logging.getLogger(__name__)

Handler = Callable[[EventT], Awaitable[None]]
DeadLetter = Callable[[EventT, PoisonMessage], Awaitable[None]]


class HandlerFailed(PoisonMessage):
    stage = "apply"


async def process_events(
    stream: faust.StreamT, agent: str, handler: Handler, dead_letter: DeadLetter
) -> None:
    """Run `handler` for every event of `stream` with the delivery rules above."""
    app = stream.app
    async for event in stream.events():
        message = event.message
        message.incref()  # released only when the handler completed (or dead-lettered)
        if await _run_one(app, agent, event, handler, dead_letter):
            message.decref()


async def process_in_batches(
    stream: faust.StreamT,
    agent: str,
    handler: Handler,
    dead_letter: DeadLetter,
    *,
    max_events: int,
    within_s: float,
    after_batch: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """`process_events` over batches of up to `max_events` events (waiting at most `within_s`
    for a batch to fill), with `after_batch` awaited before any event of the batch is released.
    By default that hands Faust's producer buffer to the Kafka client: what the handlers queued
    with `Topic.send_soon`, behind their table writes' changelog records (ADR 0008).

    Faust's per-event costs stay, but what a handler queues (`Topic.send_soon`) leaves as one
    burst per batch instead of one produce per event and loop trip (docs/benchmarks.md). Each
    event keeps the rules above: its own ownership claim, retries and dead letter, and the
    table writes it makes go to its own partition (Faust's current event is set per event, in
    this task only; the stream's background reader keeps its own). `take_events` acknowledges
    the whole batch when the next one is taken, even after an interruption; the reference held
    on each message keeps that from acknowledging what was not finished.
    """
    app = stream.app
    if after_batch is None:
        after_batch = partial(hand_over_producer_buffer, app)
    async for events in stream.take_events(max_events, within_s):
        for event in events:
            event.message.incref()
        finished = []
        for event in events:
            token = _current_event.set(weakref.ref(event))
            try:
                if await _run_one(app, agent, event, handler, dead_letter):
                    finished.append(event)
            finally:
                _current_event.reset(token)
        await retry_transient(after_batch, agent)
        for event in finished:
            event.message.decref()


async def hand_over_producer_buffer(app: Any) -> None:
    """Hand what Faust's producer buffer holds (changelog records and `send_soon` outputs, in
    order) to the Kafka client."""
    await hand_over_buffered(app.producer.buffer)


async def _run_one(
    app: Any, agent: str, event: EventT, handler: Handler, dead_letter: DeadLetter
) -> bool:
    """Handle one event; True when it is finished (applied or dead-lettered) and may be
    acknowledged, False when it must stay unacknowledged. An interruption propagates."""
    message = event.message
    token = bind_context(
        agent=agent, topic=message.topic, partition=message.partition, offset=message.offset
    )
    try:
        await ownership.settled(app)
        with ownership.claimed(app, message.tp):
            await retry_transient(partial(handler, event), message.topic)
    except asyncio.CancelledError:
        raise  # interrupted: keep the reference, so the offset is never committed
    except PartitionRevoked as exc:
        metrics.EVENTS_ABANDONED.labels(topic=message.topic).inc()
        log.info("left %s[%s]@%s to its new owner: %s", message.topic, message.partition,
                 message.offset, exc)
        return False  # keep the reference: this worker must not commit it
    except Exception as exc:
        metrics.AGENT_ERRORS.labels(agent=agent).inc()
        log.exception("%s failed on %s[%s]@%s", agent, message.topic, message.partition,
                      message.offset)
        await dead_letter(event, HandlerFailed(f"{type(exc).__name__}: {exc}"))
    finally:
        reset_context(token)
    return True
