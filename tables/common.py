"""The one shape of every table here: bytes keys, bytes values (the agents choose the encoding),
RocksDB-backed with a changelog, co-partitioned with the source topics."""

from __future__ import annotations

import faust


def bytes_table(app: faust.App, name: str, partitions: int, help: str) -> faust.Table:
    return app.Table(name, key_type=bytes, value_type=bytes, partitions=partitions, help=help)
