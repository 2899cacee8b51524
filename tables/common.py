"""The one shape of every table here: bytes keys, bytes values (the agents choose the encoding),
RocksDB-backed with a changelog, co-partitioned with the source topics, and fenced: a write
from a handler whose partition was revoked while it ran raises `PartitionRevoked` before the
changelog record is sent or the store is touched (`app.ownership`).

The persisted changelog offset of a partition store claims "every changelog record up to here is
in this store"; recovery reads only what lies past it. A changelog write acknowledged after its
partition was revoked must not advance it: records other workers wrote meanwhile are not here.
Leaving it lower only makes the next recovery re-read a few records.

Outputs never overtake these changelog records: `Topic.send` hands every buffered record to the
Kafka client before it sends (`app.faust_fixes`, ADR 0007), and the object agents queue their
changes behind them in the same buffer (ADR 0008).
"""

from __future__ import annotations

from typing import Any

import faust

from app import ownership


class FencedTable(faust.Table):
    def on_key_set(self, key: Any, value: Any) -> None:
        ownership.ensure_owned()
        super().on_key_set(key, value)

    def on_key_del(self, key: Any) -> None:
        ownership.ensure_owned()
        super().on_key_del(key)

    def _on_changelog_sent(self, fut: Any) -> None:
        if ownership.owns(self.app, fut.result().topic_partition):
            super()._on_changelog_sent(fut)


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
