"""A handler whose partition was revoked cannot write a table, advance a store's persisted
changelog offset, or read a position cached in an earlier epoch (found by the reliability harness:
executions and a position lost after a registry outage followed by two scale-downs)."""

from __future__ import annotations

import asyncio
import weakref
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from faust.streams import _current_event

from app import ownership
from app.domain.lot_methods import LotMethodSchedule
from app.domain.positions import Position
from app.errors import PartitionRevoked
from app.output_batches import send_changelog_batches
from tables.common import bytes_table
from tables.positions import PositionStore
from tests.agents.test_delivery import FakeApp


@pytest.fixture
def app() -> faust.App:
    return faust.App("test-fenced-tables", broker="memory://", store="memory://")


def test_a_write_after_the_partition_was_revoked_raises_before_touching_anything(app) -> None:
    table = bytes_table(app, "fenced", 4, "test table")
    owner = FakeApp()
    with ownership.claimed(owner, ("t", 0)):
        owner.revoke(("t", 0))
        with pytest.raises(PartitionRevoked):
            table[b"k"] = b"v"
    assert b"k" not in table.data


class Client:
    """The aiokafka producer's batch API: batches recorded, deliveries resolved by the test."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, list[tuple[bytes, bytes | None]]]] = []
        self.deliveries: list[asyncio.Future[Any]] = []

    def create_batch(self) -> Any:
        records: list[tuple[bytes, bytes | None]] = []

        def append(*, key: bytes, value: bytes | None, timestamp: Any, headers: Any) -> bool:
            records.append((key, value))
            return True

        return SimpleNamespace(records=records, append=append)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.append((partition, batch.records))
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]


class Event:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(topic="source", partition=partition)


def write_in_event(table: faust.Table, partition: int, key: bytes, value: bytes | None) -> None:
    """A table write as an agent makes it: with an event of `partition` current."""
    event = Event(partition)
    token = _current_event.set(weakref.ref(event))
    try:
        if value is None:
            del table[key]
        else:
            table[key] = value
    finally:
        _current_event.reset(token)


async def test_writes_queue_changelog_batches_and_only_owned_acks_advance_the_offset(app) -> None:
    table = bytes_table(app, "acks", 4, "test table")
    client = Client()
    app.producer = SimpleNamespace(_producer=client, buffer=None)  # type: ignore[assignment]
    app.consumer = SimpleNamespace(  # type: ignore[assignment]
        assignment=lambda: {owned}, topic_partitions=lambda topic: 4
    )
    persisted: list[tuple[object, int]] = []
    table.data.set_persisted_offset = lambda tp, o: persisted.append((tp, o))
    owned, revoked = ("acks-changelog", 0), ("acks-changelog", 1)

    write_in_event(table, 0, b"a", b"1")
    write_in_event(table, 1, b"b", b"2")
    write_in_event(table, 0, b"a", None)
    assert client.sent == [], "queued until the buffer's next hand-over"
    await send_changelog_batches(app)
    assert sorted(client.sent) == [(0, [(b"a", b"1"), (b"a", None)]), (1, [(b"b", b"2")])]
    for (partition, _), delivery in zip(client.sent, client.deliveries, strict=True):
        tp = owned if partition == 0 else revoked
        delivery.set_result(SimpleNamespace(topic_partition=tp, offset=70))
    await asyncio.sleep(0)  # done callbacks run on the next loop pass
    assert persisted == [(owned, 71)], "the last record of the owned partition's batch"


def test_positions_cached_before_a_rebalance_are_read_again_after_it(app) -> None:
    store = PositionStore(app, 4, "FIFO")
    key = "ACC-1:XOM"

    def stored(version: int) -> bytes:
        position = Position("ACC-1", "XOM", LotMethodSchedule("FIFO"))
        position.version = version
        return orjson.dumps(position.to_state())

    store.positions.data[key.encode()] = stored(27)
    assert store.get(key).version == 27
    store.positions.data[key.encode()] = stored(28)  # another worker owned it meanwhile
    app.rebalancing_count += 1
    assert store.get(key).version == 28
    assert [p.version for p in store.cached()] == [28]
