"""Latest-version tables of OMS objects: one RocksDB-backed Faust table per object type.

Key: object id (UTF-8). Value: 8-byte sequence + the original Confluent-framed Avro message
(`app.domain.objects.pack_version`), so the staleness check never decodes Avro and a write never
re-encodes it.
"""

from __future__ import annotations

import faust

from app.domain.objects import ObjectType
from tables.common import bytes_table


def table_name(object_type: ObjectType) -> str:
    return f"latest-{object_type.name.lower()}"


def latest_version_table(app: faust.App, object_type: ObjectType, partitions: int) -> faust.Table:
    return bytes_table(
        app,
        table_name(object_type),
        partitions,
        f"latest {object_type.name} version per {object_type.key_field}",
    )
