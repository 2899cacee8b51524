"""Corrections to faust-streaming internals that the delivery guarantees depend on.

`ProducerBuffer.flush()` (faust 0.15.3) gives up after waiting 0.1 s for one buffered message to
be handed to the client, and returns with records still buffered. Faust calls it right before
committing offsets, so a table's changelog records could still be in the buffer when the offsets
of the events that wrote them were committed. After a kill -9 the local stores are rebuilt from
the changelog, the committed inputs are not redelivered, and their effect is gone (found by the
reliability harness: objects left at an older sequence, trades missing from positions). Here
`flush()` waits until the buffer is empty *and* the message being handed over is in the client's
accumulator, which the client's own flush (called next by Faust) then sends.

A table write does not send its changelog record either: Faust puts it in that buffer, whose
background task hands it to the client later, while `Topic.send` (every output, change-feed,
re-key and dead-letter record) goes to the client at once. An output could therefore overtake
the changelog record of the state it describes; after a kill -9 the output was on the broker and
the state was not, and the redelivered event was applied again at another version (found by the
long reliability run: TradeApplied at versions 128-131 whose position states never reached the
changelog, the trades then applied again at 129-134; ADR 0007). `Topic.send` now first hands
every buffered record to the client (`hand_over_buffered`), so nothing sent overtakes a table
write made before it. The tables here queue their changelog records outside that buffer
(`tables.common`, ADR 0014): every hand-over, every record the buffer's task sends and every
flush before a commit hands those to the client first.

Faust's consumer drain loop hands every message to the conductor through
`wait_first(callback(message), suspend_flow.wait())`, which wraps both in tasks and adds two
more for the service's stopped/crashed events: four tasks and an `asyncio.wait` per message,
the largest framework cost per event in the ingest profile (docs/benchmarks.md). Almost always
the callback finishes without suspending (the agent's queue has room, flow is not suspended).
`wait_first` now runs that first step in place and only when the callback really suspends
hands the *already started* coroutine to the original `wait_first`, so a rebalance that
suspends flow still abandons it exactly as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from app import ownership
from app.output_batches import send_changelog_batches

_INSTALLED = False
log = logging.getLogger(__name__)


def install() -> bool:
    """Install the corrections once per process; True when this call installed them."""
    global _INSTALLED
    if _INSTALLED:
        return False
    from faust.transport.producer import ProducerBuffer

    original_send = ProducerBuffer._send_pending

    async def _send_pending(self: Any, fut: Any) -> None:
        self._blotter_in_flight = getattr(self, "_blotter_in_flight", 0) + 1
        try:
            await send_changelog_batches(self.app)
            await original_send(self, fut)
        finally:
            self._blotter_in_flight -= 1

    async def flush(self: Any) -> None:
        await send_changelog_batches(self.app)
        while self.size or getattr(self, "_blotter_in_flight", 0):
            if self.state != "running":
                raise RuntimeError("Cannot flush: producer buffer not running")
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except TimeoutError:
                continue  # still sending: keep waiting, never return with records buffered

    ProducerBuffer._send_pending = _send_pending
    ProducerBuffer.flush = flush
    _send_after_buffered_records()
    _install_inline_drain_callback()
    _log_offset_gaps()
    _serialize_seek_with_drain()
    _seek_every_partition_to_committed()
    _INSTALLED = True
    return True


async def hand_over_buffered(buffer: Any) -> None:
    """Hand every record in Faust's producer buffer to the Kafka client now, in order.

    `flush()` waits for the buffer's background task, which costs the caller a trip through
    the event loop per record (about +40% CPU per event on the ingest bench). When that task is
    not in the middle of a send, every buffered record is taken out and sent here, in buffer
    order, usually without suspending; records other handlers buffer meanwhile belong to other
    partitions or tables, whose order relative to these does not matter. When the task is
    sending one, it holds an earlier record: then wait for it with `flush()`.
    """
    await send_changelog_batches(buffer.app)
    if getattr(buffer, "_blotter_in_flight", 0) or buffer.app.conf.producer_threaded:
        await buffer.flush()
        return
    pending = buffer.pending
    taken = []
    while not pending.empty():
        taken.append(pending.get_nowait())
    for fut in taken:
        await buffer._send_pending(fut)
    if taken:
        buffer.message_sent.set()


def _send_after_buffered_records() -> None:
    from faust.topics import Topic

    original_send = Topic.send

    async def send(self: Any, **kwargs: Any) -> Any:
        await hand_over_buffered(self.app.producer.buffer)
        return await original_send(self, **kwargs)

    Topic.send = send


_EVENT_WAIT_CODE = asyncio.Event.wait.__code__


def _install_inline_drain_callback() -> None:
    from faust.transport.consumer import Consumer

    original_wait_first = Consumer.wait_first

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
        if (
            len(coros) == 2
            and timeout is None
            and getattr(coros[1], "cr_code", None) is _EVENT_WAIT_CODE
            and not self.suspend_flow.is_set()
            and not self._stopped.is_set()
            and not self._crashed.is_set()
        ):
            callback, suspend = coros
            try:
                yielded = callback.send(None)
            except StopIteration:
                suspend.close()  # finished in place: the flow wait was never needed
                return None
            except BaseException:
                suspend.close()
                raise
            idle = _drain_idle(self)
            idle.clear()  # a hand-over is in progress: perform_seek waits for its end
            try:
                return await original_wait_first(self, _resumed(callback, yielded), suspend)
            finally:
                idle.set()
        return await original_wait_first(self, *coros, timeout=timeout)

    Consumer.wait_first = wait_first


async def _resumed(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Continue a coroutine that was stepped once by hand, under whichever task awaits this."""
    return await _Resume(coro, yielded)


class _Resume:
    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.yielded
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # e.g. CancelledError thrown in by the task
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                value = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def _log_offset_gaps() -> None:
    """Faust treats offsets skipped between two fetched records as acknowledged; say so."""
    from faust.transport.consumer import Consumer

    original_add_gap = Consumer._add_gap

    async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        log.warning(
            "offset gap on %s[%s]: %s..%s counted as processed (committed %s)",
            tp.topic, tp.partition, offset_from, offset_to, self._committed_offset.get(tp),
        )
        await original_add_gap(self, tp, offset_from, offset_to)

    Consumer._add_gap = _add_gap


def _drain_idle(consumer: Any) -> asyncio.Event:
    idle = getattr(consumer, "_blotter_drain_idle", None)
    if idle is None:
        idle = consumer._blotter_drain_idle = asyncio.Event()
        idle.set()
    return idle


def _serialize_seek_with_drain() -> None:
    """Seeking to the committed offsets must not race the drain loop.

    Faust's recovery resumes the flow and only then calls `perform_seek`, which awaits one
    committed-offset request per partition and finally overwrites every read offset. The drain
    loop keeps handing over records meanwhile; when the read offsets are reset under it, the
    next record looks like it jumped ahead, Faust records the offsets in between as a gap that
    counts as processed, and commits past records no agent ever saw (found by the reliability
    harness: runs of consecutive inputs lost right after rebalances). Here the flow is stopped
    for the seek and the seek waits until the drain loop's current hand-over is over, so the
    reset read offsets and the client's positions agree; records handed over before the seek
    are fetched again (agents are idempotent per object sequence and trade id).

    The commit rule is corrected too: Faust commits the first run of acknowledged offsets when
    it starts *one past* the committed offset, so the committed offset itself (the next record
    to process) could be skipped. And a revocation forgets every partition's committed offset
    until the next seek: a handler finishing in between (revocation does not wait for them)
    acknowledged its offset, and Faust, with no committed offset to compare, committed it
    although records before it were left unacknowledged to their owner (found by the
    reliability harness: runs of executions and orders lost after two rebalances 3 s apart).
    Nothing is committed for a partition now until it was seeked since its last revocation.
    """
    from faust.transport.consumer import Consumer

    original_new_offset = Consumer._new_offset
    original_revoked = Consumer.on_partitions_revoked

    def _new_offset(self: Any, tp: Any) -> int | None:
        if tp not in seeked_partitions(self) or committed_offset_pending(
            self._acked[tp], self._committed_offset[tp], self._gap.get(tp)
        ):
            return None
        return original_new_offset(self, tp)

    async def on_partitions_revoked(self: Any, revoked: Any) -> None:
        seeked_partitions(self).difference_update(revoked)
        await original_revoked(self, revoked)

    Consumer.perform_seek = serialized_seek(Consumer.perform_seek)
    Consumer._new_offset = _new_offset
    Consumer.on_partitions_revoked = on_partitions_revoked


def seeked_partitions(consumer: Any) -> set[Any]:
    """The partitions seeked to their committed offsets since they were last revoked: the only
    ones whose committed offset is known, so the only ones that may be committed."""
    seeked = getattr(consumer, "_blotter_seeked", None)
    if seeked is None:
        seeked = consumer._blotter_seeked = set()
    return seeked


def serialized_seek(original: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """`perform_seek` with the flow stopped and the drain loop's hand-over finished."""

    async def perform_seek(self: Any) -> None:
        was_active = self.flow_active
        generation = self.app.consumer_generation_id
        at = ownership.epoch(self.app)
        if was_active:
            self.stop_flow()  # also ends a hand-over waiting for room in an agent's buffer
        await _drain_idle(self).wait()
        await original(self)
        if at == ownership.epoch(self.app):  # no revocation began meanwhile
            seeked_partitions(self).update(self.assignment())
        if was_active and generation == self.app.consumer_generation_id:
            self.resume_flow()

    return perform_seek


def _seek_every_partition_to_committed() -> None:
    """`seek_to_committed` must move *every* partition back, including those with no commit.

    aiokafka seeks only when the committed offset is truthy: a partition with nothing committed
    yet (or committed 0) keeps its fetch position. Records fetched for it and then dropped by a
    rebalance (Faust abandons what it fetched when the flow stops) are then never fetched again
    (found by the reliability harness: the first record of a partition, here a poison message,
    never reached its agent; the stall log showed client position 1, Faust read offset None).
    Here a partition committed at 0 is seeked to 0, and one with no commit at all to the
    start offset its `auto_offset_reset` rule gives, where a fresh consumer would start.
    """
    from aiokafka import AIOKafkaConsumer

    async def seek_to_committed(self: Any, *partitions: Any) -> dict[Any, int | None]:
        if not partitions:
            partitions = tuple(self._subscription.assigned_partitions())
        committed_offsets: dict[Any, int | None] = {}
        uncommitted = []
        for tp in partitions:
            offset = await self.committed(tp)
            committed_offsets[tp] = offset
            if offset is not None and offset >= 0:
                self._fetcher.seek_to(tp, offset)
            else:
                uncommitted.append(tp)
        if uncommitted:
            for tp, offset in (await start_offsets(self, uncommitted)).items():
                self._fetcher.seek_to(tp, offset)
                committed_offsets[tp] = offset  # where commits go on from, as if committed
        return committed_offsets

    AIOKafkaConsumer.seek_to_committed = seek_to_committed


async def start_offsets(consumer: Any, tps: list[Any]) -> dict[Any, int]:
    """Where a consumer with no committed offset starts (`auto_offset_reset`), looked up
    rather than left to a pending reset: Faust's livelock check reads every partition's
    position and crashes the consumer on one that is awaiting a reset."""
    from aiokafka.consumer.fetcher import OffsetResetStrategy

    strategy = consumer._fetcher._default_reset_strategy
    if strategy == OffsetResetStrategy.EARLIEST:
        return dict(await consumer.beginning_offsets(tps))
    if strategy == OffsetResetStrategy.LATEST:
        return dict(await consumer.end_offsets(tps))
    return {}


def committed_offset_pending(acked: list[int], committed: int | None, gaps: Any) -> bool:
    """True when offsets after `committed` were processed but `committed` itself was not
    (and is not a real gap in the partition): nothing may be committed yet. After a seek Faust
    keeps a committed offset of 0 as None; the seek gives a partition with no commit its start
    offset, so None here is offset 0."""
    position = 0 if committed is None else committed
    if not acked or min(acked) <= position:
        return False
    return not gaps or not gaps.overlaps_point(position)
