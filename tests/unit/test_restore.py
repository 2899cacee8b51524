"""Bulk changelog restore (`tables.restore`) into real RocksDB stores, from an in-memory log.

The consumer here is a list of records per partition with aiokafka's `getmany`/`position`
semantics (a fetch returns up to `max_records` from the position on; offsets may have gaps, as
in a compacted topic). tests/integration/test_bulk_restore.py runs the same code against the
embedded broker and a real worker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rocksdict import Options, Rdict

from tables import restore
from tables.restore import RestoreTarget, restore_changelogs

OFFSET_KEY = b"__faust\0offset__"
TP0 = TopicPartition("t-changelog", 0)
TP1 = TopicPartition("t-changelog", 1)


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes
    value: bytes | None


class LogConsumer:
    """aiokafka's consumer surface used by the restore, over lists of records."""

    def __init__(self, logs: dict[TopicPartition, list[Record]], ends: dict[TopicPartition, int]):
        self.logs = logs
        self.ends = ends
        self.positions: dict[TopicPartition, int] = {}
        self.fetches = 0
        self.fail_after: int | None = None

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = {tp: 0 for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> dict:
        if self.fail_after is not None and self.fetches >= self.fail_after:
            raise asyncio.CancelledError  # what a rebalance does to the restore
        self.fetches += 1
        out = {}
        for tp in tps:
            records = [r for r in self.logs[tp] if r.offset >= self.positions[tp]][:max_records]
            if records:
                out[tp] = records
                self.positions[tp] = records[-1].offset + 1
            else:
                self.positions[tp] = max(self.positions[tp], self.ends[tp])
        return out

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[TopicPartition, Rdict]]:
    opened = {
        tp: Rdict(str(tmp_path / f"p{tp.partition}-{uuid.uuid4().hex}"), Options(raw_mode=True))
        for tp in (TP0, TP1)
    }
    yield opened
    for db in opened.values():
        db.close()


def contents(db: Rdict) -> dict[bytes, bytes]:
    return {k: v for k, v in db.items() if k != OFFSET_KEY}


def expected(records: list[Record], start: int) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for record in records:
        if record.offset < start:
            continue
        if record.value is None:
            state.pop(record.key, None)
        else:
            state[record.key] = record.value
    return state


def far_deadline() -> float:
    return time.monotonic() + 60


async def run_restore(
    consumer: LogConsumer,
    targets: dict[TopicPartition, RestoreTarget],
    deadline: float | None = None,
) -> restore.RestoreResult:
    """`restore_changelogs` with the Faust offset key, and a deadline far off by default."""
    return await restore_changelogs(
        consumer, targets, offset_key=OFFSET_KEY,
        deadline=far_deadline() if deadline is None else deadline,
    )


def log_of(pairs: list[tuple[int, bytes | None]], start_offset: int = 0) -> list[Record]:
    return [
        Record(start_offset + i, f"k{key}".encode(), value) for i, (key, value) in enumerate(pairs)
    ]


async def test_a_store_gets_the_last_value_of_every_key_and_the_last_offset(stores) -> None:
    log = log_of([(1, b"a"), (2, b"b"), (1, b"c"), (3, b"d"), (2, None)])
    consumer = LogConsumer({TP0: log}, {TP0: 5})
    result = await run_restore(consumer, {TP0: RestoreTarget(stores[TP0], 0, 5)})
    assert contents(stores[TP0]) == {b"k1": b"c", b"k3": b"d"}
    assert stores[TP0][OFFSET_KEY] == b"4"
    assert result.applied == {TP0: 4}
    assert result.complete == {TP0}
    assert result.records == {TP0: 5}


async def test_only_records_from_the_start_offset_on_are_read(stores) -> None:
    log = log_of([(1, b"old"), (2, b"b"), (1, b"new")])
    stores[TP0][b"k1"] = b"old"
    stores[TP0][OFFSET_KEY] = b"0"
    consumer = LogConsumer({TP0: log}, {TP0: 3})
    result = await run_restore(consumer, {TP0: RestoreTarget(stores[TP0], 1, 3)})
    assert contents(stores[TP0]) == {b"k1": b"new", b"k2": b"b"}
    assert result.records == {TP0: 2}


async def test_records_past_the_end_taken_at_the_start_are_left_for_the_framework(stores) -> None:
    log = log_of([(1, b"a"), (2, b"b"), (3, b"late")])
    consumer = LogConsumer({TP0: log}, {TP0: 3})
    result = await run_restore(consumer, {TP0: RestoreTarget(stores[TP0], 0, 2)})
    assert contents(stores[TP0]) == {b"k1": b"a", b"k2": b"b"}
    assert stores[TP0][OFFSET_KEY] == b"1"
    assert result.complete == {TP0}


async def test_a_tail_without_data_records_still_moves_the_offset_to_the_end(stores) -> None:
    # offsets 3..5 hold no data records (compacted away, or transaction markers)
    consumer = LogConsumer({TP0: log_of([(1, b"a"), (2, b"b"), (1, b"c")])}, {TP0: 6})
    result = await run_restore(consumer, {TP0: RestoreTarget(stores[TP0], 0, 6)})
    assert stores[TP0][OFFSET_KEY] == b"5"
    assert result.applied == {TP0: 5}
    assert result.complete == {TP0}


async def test_a_partition_already_at_its_end_is_not_read(stores) -> None:
    consumer = LogConsumer({TP0: log_of([(1, b"a")])}, {TP0: 1})
    result = await run_restore(consumer, {TP0: RestoreTarget(stores[TP0], 1, 1)})
    assert consumer.fetches == 0
    assert result.complete == {TP0}
    assert result.applied == {}
    assert OFFSET_KEY not in stores[TP0]


async def test_past_the_deadline_nothing_is_written_and_nothing_is_complete(stores) -> None:
    consumer = LogConsumer({TP0: log_of([(1, b"a")])}, {TP0: 1})
    result = await run_restore(
        consumer, {TP0: RestoreTarget(stores[TP0], 0, 1)}, deadline=time.monotonic() - 1
    )
    assert result.complete == set()
    assert contents(stores[TP0]) == {}
    assert OFFSET_KEY not in stores[TP0]


async def test_a_restore_cancelled_midway_leaves_each_store_at_a_batch_boundary(
    stores, monkeypatch
) -> None:
    monkeypatch.setattr(restore, "MAX_RECORDS", 3)
    log = log_of([(i % 4, f"v{i}".encode()) for i in range(10)])
    consumer = LogConsumer({TP0: log}, {TP0: 10})
    consumer.fail_after = 2
    with pytest.raises(asyncio.CancelledError):
        await run_restore(consumer, {TP0: RestoreTarget(stores[TP0], 0, 10)})
    offset = int(stores[TP0][OFFSET_KEY])
    assert offset == 5  # two batches of three
    assert contents(stores[TP0]) == expected(log[: offset + 1], 0)


operations = st.lists(
    st.tuples(st.integers(0, 7), st.one_of(st.none(), st.binary(min_size=1, max_size=4))),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops0=operations,
    ops1=operations,
    gap=st.integers(0, 3),
    start0=st.integers(0, 20),
    batch=st.integers(1, 25),
)
def test_restored_stores_equal_replaying_the_changelog(
    stores, monkeypatch, ops0, ops1, gap, start0, batch
) -> None:
    """Any changelog (with offset gaps, as compaction leaves), any start offset, any batch size:
    the store ends as a replay of the records from the start offset, at the last offset."""
    monkeypatch.setattr(restore, "MAX_RECORDS", batch)
    log0 = [Record(i * (gap + 1), f"k{k}".encode(), v) for i, (k, v) in enumerate(ops0)]
    log1 = log_of(ops1)
    ends = {TP0: log0[-1].offset + 1, TP1: log1[-1].offset + 1}
    start0 = min(start0, ends[TP0])
    for db in stores.values():
        for key in list(db.keys()):
            del db[key]
    consumer = LogConsumer({TP0: log0, TP1: log1}, ends)
    result = asyncio.run(
        run_restore(
            consumer,
            {
                TP0: RestoreTarget(stores[TP0], start0, ends[TP0]),
                TP1: RestoreTarget(stores[TP1], 0, ends[TP1]),
            },
        )
    )
    assert contents(stores[TP0]) == expected(log0, start0)
    assert contents(stores[TP1]) == expected(log1, 0)
    assert result.complete == {TP0, TP1}
    assert stores[TP1][OFFSET_KEY] == str(ends[TP1] - 1).encode()
    if start0 < ends[TP0]:
        assert stores[TP0][OFFSET_KEY] == str(ends[TP0] - 1).encode()
    assert sum(result.records.values()) == (
        len([r for r in log0 if r.offset >= start0]) + len(log1)
    )
