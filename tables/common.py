"""The one shape of every table here: bytes keys, bytes values (the agents choose the encoding),
RocksDB-backed with a changelog, co-partitioned with the source topics, and fenced: a write
from a handler whose partition was revoked while it ran raises `PartitionRevoked` before the
changelog record is sent or the store is touched (`app.ownership`).

The persisted changelog offset of a partition store claims "every changelog record up to here is
in this store"; recovery reads only what lies past it. A changelog write acknowledged after its
partition was revoked must not advance it: records other workers wrote meanwhile are not here.
Leaving it lower only makes the next recovery re-read a few records.

A table write does not send its changelog record: Faust buffers it (`ProducerBuffer`) and a
background task hands it to the Kafka client later. An output a handler sends itself goes to the
client at once, so it could overtake the changelog record of the state it describes; after a
kill -9 the output was on the broker and the state was not, and the redelivered event was
applied again at another version (found by the long reliability run: TradeApplied at versions
128-131 whose position states never reached the changelog, the trades then applied again at
129-134). Handlers therefore await `changelog_handed_over` between their table writes and
their outputs.
"""

from __future__ import annotations

from typing import Any

import faust

from app import faust_fixes, ownership


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


async def changelog_handed_over(app: faust.App) -> None:
    """Return once every changelog record of the table writes made so far is in the Kafka
    client (`app.faust_fixes.hand_over_buffered`), so anything sent after it is sent after
    them."""
    await faust_fixes.hand_over_buffered(app.producer.buffer)


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
