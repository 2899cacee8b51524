"""Stall detection: lag that does not move past the threshold fails liveness; idle does not."""

from __future__ import annotations

from types import SimpleNamespace

from app.health import HealthMonitor


class FakeTP(SimpleNamespace):
    def __hash__(self) -> int:
        return hash((self.topic, self.partition))


class FakeConsumer:
    def __init__(self) -> None:
        self.tp = FakeTP(topic="orders", partition=0)
        self.hw = 0
        self._read_offset: dict = {}

    def assignment(self) -> set:
        return {self.tp}

    def highwater(self, tp: FakeTP) -> int:
        return self.hw


def monitor() -> tuple[HealthMonitor, FakeConsumer]:
    consumer = FakeConsumer()
    app = SimpleNamespace(consumer=consumer, ready=True, agents={}, rebalancing=False)
    return HealthMonitor(app, stall_after_s=30), consumer


def test_idle_partition_is_not_stalled() -> None:
    mon, _ = monitor()
    for t in range(0, 200, 1):
        mon.sample(float(t))
    assert mon.stalled(200.0) == []


def test_lag_without_progress_beyond_threshold_is_stalled_and_recovers() -> None:
    mon, consumer = monitor()
    consumer.hw = 100
    consumer._read_offset[consumer.tp] = 10
    mon.sample(0.0)
    mon.sample(1.0)
    assert mon.stalled(20.0) == []
    mon.sample(40.0)
    assert mon.stalled(40.0) == ["orders[0]"]
    consumer._read_offset[consumer.tp] = 11  # fetching again
    mon.sample(41.0)
    assert mon.stalled(41.0) == []
    assert mon.partitions[("orders", 0)].lag == 88


def test_progressing_partition_with_lag_is_not_stalled() -> None:
    mon, consumer = monitor()
    consumer.hw = 10_000
    for t in range(100):
        consumer._read_offset[consumer.tp] = t * 50
        mon.sample(float(t))
    assert mon.stalled(100.0) == []


def test_crashed_agent_fails_liveness() -> None:
    mon, _ = monitor()
    crashed_actor = SimpleNamespace(crashed=True)
    mon.app.agents = {
        "ok": SimpleNamespace(crashed=False, _actors=[]),
        "bad": SimpleNamespace(crashed=False, _actors=[crashed_actor]),
    }
    status = mon.status()
    assert status["components"]["agents"]["crashed"] == ["bad"]
    assert status["alive"] is False


def test_changelog_partitions_never_count_as_stalled() -> None:
    mon, consumer = monitor()
    consumer.tp = FakeTP(topic="app-latest-order-changelog", partition=0)
    consumer.hw = 500  # a changelog read only during recovery: lag that never moves
    for t in range(0, 200, 10):
        mon.sample(float(t))
    assert mon.stalled(200.0) == []
    assert mon.partitions == {}
