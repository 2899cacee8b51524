"""Which partition owns a key: Kafka's default (murmur2) partitioner, as Faust and Java use.

Tables are written to the partition of the event being processed, so every event of one object
must be processed in the partition its id hashes to. A record keyed by something else (or placed
by another partitioner, e.g. librdkafka's default) is forwarded once, re-keyed, to an internal
topic co-partitioned with the table.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=65_536)
def owner_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
