"""One produce request per broker for everything ready to go to it, as the Java client does.

aiokafka (0.14) decides per partition batch whether it may leave: a batch leaves once its own
linger has passed. Batches that received records a few microseconds apart therefore leave in
separate requests. The first goes out, and the rest wait until it is answered, because only
one request per broker is in flight. An agent that hands a batch of records to the client at once
(a changelog record and a change per event, over several partitions) paid up to one produce
request per partition: 2,479-2,816 requests for 10,000 orders on `bench_ingest --quick`. Each
request costs the worker and the broker Python and network work.

Kafka's Java producer drains every partition of a broker that has at least one sendable
batch (`RecordAccumulator.ready` then `drain`). The same rule is installed here: when a
broker has a batch whose linger has passed, the other batches for that broker are treated as
ready too. The same run then needed 813-821 requests (ADR 0009). Nothing leaves later than
before, and records of one partition keep their order. A produce request carries a handler's
changelog records together with the outputs handed over after them, which ADR 0007 relies on.
"""

from __future__ import annotations

import time
from typing import Any

_INSTALLED = False


def brokers_with_a_sendable_batch(
    batches: Any, leader_of: Any, ignore_nodes: Any, muted_partitions: Any
) -> set[Any]:
    """The leaders that have a partition whose first batch has stopped lingering."""
    ready: set[Any] = set()
    for tp, queue in batches.items():
        if not queue or tp in muted_partitions:
            continue
        leader = leader_of(tp)
        if leader is None or leader == -1 or (ignore_nodes and leader in ignore_nodes):
            continue
        if not queue[0].remaining_linger():
            ready.add(leader)
    return ready


def install() -> bool:
    """Install the rule once per process; True when this call installed it."""
    global _INSTALLED
    if _INSTALLED:
        return False
    from aiokafka.producer.message_accumulator import MessageAccumulator

    original = MessageAccumulator.drain_by_nodes

    def drain_by_nodes(self: Any, ignore_nodes: Any, muted_partitions: Any = frozenset()) -> Any:
        leader_of = self._cluster.leader_for_partition
        ready = brokers_with_a_sendable_batch(
            self._batches, leader_of, ignore_nodes, muted_partitions
        )
        if ready:
            now = time.monotonic()
            for tp, queue in self._batches.items():
                if queue and tp not in muted_partitions and leader_of(tp) in ready:
                    batch = queue[0]  # its linger ends now: it leaves with the ready one
                    batch._ctime = min(batch._ctime, now - batch._linger_time)
        return original(self, ignore_nodes, muted_partitions)

    MessageAccumulator.drain_by_nodes = drain_by_nodes
    _INSTALLED = True
    return True
