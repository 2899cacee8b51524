"""A handler whose partition was revoked cannot write a table, advance a store's persisted
changelog offset, or read a position cached in an earlier epoch (found by the reliability harness:
executions and a position lost after a registry outage followed by two scale-downs)."""

from __future__ import annotations

from types import SimpleNamespace

import faust
import orjson
import pytest

from app import ownership
from app.domain.lot_methods import LotMethodSchedule
from app.domain.positions import Position
from app.errors import PartitionRevoked
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


def test_an_acknowledgement_for_a_revoked_partition_leaves_the_persisted_offset(app) -> None:
    table = bytes_table(app, "acks", 4, "test table")
    persisted: list[tuple[object, int]] = []
    table._data = SimpleNamespace(set_persisted_offset=lambda tp, o: persisted.append((tp, o)))
    owned, revoked = ("acks-changelog", 0), ("acks-changelog", 1)
    app.consumer = SimpleNamespace(assignment=lambda: {owned})

    def sent(tp: tuple[str, int], offset: int) -> SimpleNamespace:
        metadata = SimpleNamespace(topic_partition=tp, offset=offset)
        return SimpleNamespace(result=lambda: metadata)

    table._on_changelog_sent(sent(revoked, 74))
    table._on_changelog_sent(sent(owned, 12))
    assert persisted == [(owned, 12)]


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
