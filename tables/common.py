"""The one shape of every table here: bytes keys, bytes values (the agents choose the encoding),
RocksDB-backed with a changelog, co-partitioned with the source topics, and fenced: a write
from a handler whose partition was revoked while it ran raises `PartitionRevoked` before the
changelog record is queued or the store is touched (`app.ownership`).

A write queues its changelog record in the table's `OutputBatches` instead of Faust's producer
buffer (ADR 0014): the buffer's background task hands each record to the client alone, with a
future, a callback and a sensor call per record, where a batch of writes needs one Kafka batch
per partition and one delivery callback per batch. The records leave, in the order written,
before anything that could describe their state: every hand-over of Faust's producer buffer
(`Topic.send`, the batch agents' `after_batch`, each record the buffer's task sends) and every
flush before a commit sends the changelog batches first (`app.faust_fixes`, ADR 0007).

The persisted changelog offset of a partition store claims "every changelog record up to here is
in this store"; recovery reads only what lies past it. A changelog write acknowledged after its
partition was revoked must not advance it: records other workers wrote meanwhile are not here.
Leaving it lower only makes the next recovery re-read a few records.

These tables are not windowed, so the key-expiry bookkeeping of Faust's windowed tables is not
kept.
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka.structs import TopicPartition

from app import ownership
from app.output_batches import OutputBatches, changelog_batches


class FencedTable(faust.Table):
    _changelog_records: OutputBatches | None = None

    def on_key_set(self, key: Any, value: Any) -> None:
        ownership.ensure_owned()
        self._queue_changelog(key, value, self.value_serializer)
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:
        ownership.ensure_owned()
        self._queue_changelog(key, None, "raw")
        self._sensor_on_del(self, key)

    def _queue_changelog(self, key: Any, value: Any, value_serializer: Any) -> None:
        topic = self.changelog_topic
        headers = topic.prepare_headers(None)
        key_bytes, headers = topic.prepare_key(key, self.key_serializer, None, headers)
        value_bytes, headers = topic.prepare_value(value, value_serializer, None, headers)
        if isinstance(headers, dict):
            headers = list(headers.items())
        self.changelog_records().add(
            key_bytes, value_bytes, headers or [], partition=self.partition_for_key(key)
        )

    def changelog_records(self) -> OutputBatches:
        """The changelog records written and not yet handed to the client."""
        if self._changelog_records is None:
            self._changelog_records = OutputBatches(
                self.app,
                self.changelog_topic.get_topic_name(),
                on_delivered=self._on_changelog_delivered,
                count_published=False,
            )
            changelog_batches(self.app).append(self._changelog_records)
        return self._changelog_records

    def _on_changelog_delivered(self, tp: TopicPartition, last_offset: int) -> None:
        if not ownership.owns(self.app, tp):
            return
        if self.app.in_transaction:
            self.app.tables.persist_offset_on_commit(self.data, tp, last_offset)
        else:
            self.data.set_persisted_offset(tp, last_offset)


def bytes_table(app: faust.App, name: str, partitions: int, help: str) -> faust.Table:
    table = FencedTable(
        app,
        name=name,
        key_type=bytes,
        value_type=bytes,
        partitions=partitions,
        help=help,
        beacon=app.tables.beacon,
    )
    return app.tables.add(table)
