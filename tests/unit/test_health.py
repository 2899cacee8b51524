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


def test_a_stall_is_logged_once_with_the_flow_control_state(caplog) -> None:
    mon, consumer = monitor()
    consumer.hw = 5
    consumer._read_offset[consumer.tp] = 3
    consumer._active_partitions = set()  # e.g. left out of the fetch after a rebalance
    consumer._paused_partitions = {consumer.tp}
    with caplog.at_level("WARNING", logger="app.health"):
        for t in (0.0, 1.0, 31.0, 32.0, 90.0):
            mon.sample(t)
    stalls = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert len(stalls) == 1
    assert "orders[0] stalled: lag 1, read offset 3" in stalls[0]
    assert "'active': False" in stalls[0] and "'paused': True" in stalls[0]
