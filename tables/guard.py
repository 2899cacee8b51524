"""Local table state must never outlive the changelog it came from.

A worker restarted against a broker whose topics were recreated (an embedded broker whose data
was wiped, a cluster rebuilt) finds RocksDB partitions whose persisted changelog offset lies at
or beyond the changelog's end. Faust would crash on recovery with a ConsistencyError, or worse,
serve state the changelog no longer backs. Before Faust opens any store, this check drops such
partitions so they are rebuilt from the changelog.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

OFFSET_KEY = b"__faust\0offset__"  # where faust.stores.rocksdb keeps the persisted offset


def persisted_offset(db_path: Path) -> int | None:
    """The changelog offset a partition store recorded, or None if unreadable/absent."""
    from rocksdict import AccessType, Rdict

    try:
        db = Rdict(str(db_path), access_type=AccessType.read_only())
    except Exception as exc:  # a corrupt or foreign directory: treat as unusable
        log.warning("cannot open %s read-only: %s", db_path, exc)
        return None
    try:
        raw = db.get(OFFSET_KEY)
    finally:
        db.close()
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def stale_partitions(
    tabledir: Path,
    tables: Mapping[str, str],
    end_offsets: Mapping[tuple[str, int], int],
) -> list[Path]:
    """Partition stores to drop. `tables` maps table name -> changelog topic;
    `end_offsets` maps (changelog topic, partition) -> end offset (missing = topic gone)."""
    stale: list[Path] = []
    for table, changelog in tables.items():
        pattern = re.compile(rf"^{re.escape(table)}-(\d+)\.db$")
        for path in sorted(tabledir.glob(f"{table}-*.db")):
            match = pattern.match(path.name)
            if not match:
                continue
            partition = int(match.group(1))
            end = end_offsets.get((changelog, partition))
            offset = persisted_offset(path)
            if end is None or (offset is not None and offset >= end):
                stale.append(path)
    return stale


def all_partitions(tabledir: Path, tables: Iterable[str]) -> list[Path]:
    """Every local partition store of the given tables."""
    found: list[Path] = []
    for table in tables:
        pattern = re.compile(rf"^{re.escape(table)}-(\d+)\.db$")
        found += [p for p in sorted(tabledir.glob(f"{table}-*.db")) if pattern.match(p.name)]
    return found


def drop(paths: Iterable[Path]) -> int:
    count = 0
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
        log.warning("dropped local table state %s: its changelog no longer backs it", path)
        count += 1
    return count


async def changelog_end_offsets(
    bootstrap: str, topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """End offsets of every partition of the given topics (absent topics are left out)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        existing = await consumer.topics()
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in existing
            for p in (consumer.partitions_for_topic(topic) or ())
        ]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()
