"""Rebuilding RocksDB partition stores from their changelogs in bulk, without the framework.

Faust restores a table by sending every changelog record through the worker's consumer drain
loop, the conductor and the recovery buffers: about 200 us of Python per record, 4,600
records/s on a 2-core machine, while a plain `getmany` + `WriteBatch` reads and writes the same
changelog at 230,000-530,000 records/s (docs/benchmarks.md). A worker replaced after a kill -9
rebuilds every store it is given, so that cost is paid on the failover path.

`restore_changelogs` reads each partition from the first offset the store lacks up to the end
offset taken when recovery started, with a consumer of its own that belongs to no group, and
writes each fetched batch together with the store's persisted-offset key in one `WriteBatch`:
a store is therefore always "every record up to the offset it records", whether the restore
finishes, runs out of time or is cancelled by the next rebalance. What it does not finish is
left to the framework's own recovery, which starts from that offset.

The bytes written are the changelog record's key and value, exactly what Faust's
`Store.apply_changelog_batch` writes (a record without a value deletes the key).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from rocksdict import WriteBatch

#: Records per `getmany` call: large enough that the per-call cost vanishes, small enough that a
#: rebalance cancelling the restore loses at most one batch of work.
MAX_RECORDS = 20_000


class PartitionStore(Protocol):
    """What a restore needs of one partition's RocksDB database (`rocksdict.Rdict`)."""

    def write(self, batch: WriteBatch) -> None: ...


@dataclass(frozen=True)
class RestoreTarget:
    """One changelog partition to read into one store: offsets `start` up to `end` (exclusive;
    the partition's end offset when recovery began)."""

    store: PartitionStore
    start: int
    end: int


@dataclass
class RestoreResult:
    """`applied`: per partition, the last offset now in its store (only partitions that
    advanced); `complete`: the partitions read up to their end; `records`: records written per
    partition."""

    applied: dict[TopicPartition, int]
    complete: set[TopicPartition]
    records: dict[TopicPartition, int]


async def restore_changelogs(
    consumer: Any,
    targets: Mapping[TopicPartition, RestoreTarget],
    *,
    offset_key: bytes,
    deadline: float,
) -> RestoreResult:
    """Read `targets` with `consumer` (a started `AIOKafkaConsumer` without a group) until each
    is at its end or `time.monotonic()` passes `deadline`."""
    result = RestoreResult(applied={}, complete=set(), records={})
    pending = {tp for tp, target in targets.items() if target.start < target.end}
    result.complete.update(set(targets) - pending)
    if not pending:
        return result
    consumer.assign(sorted(pending))
    for tp in pending:
        consumer.seek(tp, targets[tp].start)
    while pending and time.monotonic() < deadline:
        fetched = await consumer.getmany(*pending, timeout_ms=200, max_records=MAX_RECORDS)
        for tp, messages in fetched.items():
            target = targets[tp]
            batch = WriteBatch(raw_mode=True)
            last, written = -1, 0
            for message in messages:
                if message.offset >= target.end:
                    break
                if message.value is None:
                    batch.delete(message.key)
                else:
                    batch.put(message.key, message.value)
                last = message.offset
                written += 1
            if last >= 0:
                batch.put(offset_key, str(last).encode())
                target.store.write(batch)
                result.applied[tp] = last
                result.records[tp] = result.records.get(tp, 0) + written
        for tp in list(pending):
            if await consumer.position(tp) >= targets[tp].end:
                pending.discard(tp)
                result.complete.add(tp)
                end = targets[tp].end - 1
                if result.applied.get(tp, targets[tp].start - 1) < end:
                    # The tail held no data records (compacted away, or transaction markers):
                    # every record below the end offset is in the store all the same.
                    batch = WriteBatch(raw_mode=True)
                    batch.put(offset_key, str(end).encode())
                    targets[tp].store.write(batch)
                    result.applied[tp] = end
    return result
