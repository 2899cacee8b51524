"""The one Avro serializer: Confluent wire format, writer schema by id, app reader schema.

Wire format: byte 0 is the magic 0, bytes 1-4 the schema id (big endian), then the Avro binary
body. Writer schemas are resolved by id — through a Confluent-compatible registry when one is
configured, otherwise from `schemas/manifest.json` — and every body is decoded with the writer
schema *and* the app's reader schema, so compatible evolution (added optional fields, removed
fields with defaults, new enum symbols with a default) decodes.

Agents consume raw bytes and call `decode` themselves: Faust acknowledges a message whose codec
fails, so decoding inside Faust's codec layer would lose poison messages instead of dead-lettering
them. Every way a message can be undecodable becomes `DecodeError`; a registry that does not answer
becomes `SchemaRegistryUnavailable`, which callers retry and never dead-letter.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import fastavro
import orjson

from app import metadata
from app.errors import DecodeError, SchemaRegistryUnavailable

MAGIC = 0
_HEADER = struct.Struct(">bI")
HEADER_SIZE = _HEADER.size


class SchemaResolver(Protocol):
    """Maps schema ids to writer schemas and subjects to the id producers must use."""

    def writer_schema(self, schema_id: int) -> dict[str, Any]: ...

    def id_for_subject(self, subject: str) -> int: ...

    def is_cached(self, schema_id: int) -> bool: ...


def _parse(schema: Mapping[str, Any] | str) -> dict[str, Any]:
    """Parse once, keeping fastavro's "parsed" hint: without it fastavro parses the schema
    again on every read and write (about 60% of the decode time of an order)."""
    raw = orjson.loads(schema) if isinstance(schema, str | bytes) else dict(schema)
    return fastavro.parse_schema(raw, _force=True)


class ManifestResolver:
    """Offline resolution from the manifest checked into `schemas/`, so producers and the app
    agree on ids without any server."""

    def __init__(self, schemas_dir: Path | None = None) -> None:
        self._by_id: dict[int, dict[str, Any]] = {}
        self._by_subject: dict[str, int] = {}
        for subject, (schema_id, path) in metadata.load_manifest(schemas_dir).items():
            self._by_subject[subject] = schema_id
            if schema_id not in self._by_id:
                self._by_id[schema_id] = _parse(path.read_text())

    def is_cached(self, schema_id: int) -> bool:
        return True  # everything is loaded up front; an unknown id is poison, not a fetch

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise DecodeError(f"unknown schema id {schema_id}") from None

    def id_for_subject(self, subject: str) -> int:
        try:
            return self._by_subject[subject]
        except KeyError:
            raise DecodeError(f"no schema registered for subject {subject!r}") from None


class RegistryResolver:
    """Resolution through a Confluent-compatible Schema Registry (confluent-kafka's client).

    Lookups are cached by id for the life of the process, so the blocking HTTP call happens once
    per schema id. A 404 means the id does not exist (poison); anything else that prevents an
    answer is an outage (transient).
    """

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self._client = SchemaRegistryClient(
            # No client-side retries: they sleep on the calling thread; callers retry with
            # their own backoff (and fetch off the event loop, see AvroSerde.fetch_schema).
            {"url": url, "timeout": timeout_s, "max.retries": 0}
        )
        self._by_id: dict[int, dict[str, Any]] = {}
        self._by_subject: dict[str, int] = {}
        self._lock = threading.Lock()

    def is_cached(self, schema_id: int) -> bool:
        return schema_id in self._by_id

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError(f"unknown schema id {schema_id}") from None
            raise SchemaRegistryUnavailable(f"schema registry error: {exc}") from None
        except Exception as exc:  # transport errors of any kind: the registry is unreachable
            raise SchemaRegistryUnavailable(f"schema registry unreachable: {exc}") from None
        try:
            parsed = _parse(schema.schema_str)
        except Exception as exc:
            raise DecodeError(f"schema id {schema_id} is not a valid Avro schema: {exc}") from None
        with self._lock:
            self._by_id[schema_id] = parsed
        return parsed

    def id_for_subject(self, subject: str) -> int:
        cached = self._by_subject.get(subject)
        if cached is not None:
            return cached
        try:
            registered = self._client.get_latest_version(subject)
        except Exception as exc:
            raise SchemaRegistryUnavailable(f"cannot look up subject {subject}: {exc}") from None
        self._by_subject[subject] = registered.schema_id
        return registered.schema_id


# Rows an agent decoded and forwarded as they were (the change feed carries the input's bytes),
# kept until the worker's own change-feed reader decodes the same bytes: it reads them back
# within tens of milliseconds, so a few thousand entries cover it at any rate.
REMEMBERED_MAX = 4096


class AvroSerde:
    """Encode and decode Confluent-framed Avro, reading with the app's own reader schemas."""

    def __init__(self, resolver: SchemaResolver, schemas_dir: Path | None = None) -> None:
        self._resolver = resolver
        self._schemas_dir = schemas_dir
        self._readers: dict[str, dict[str, Any]] = {}
        self._read_plans: dict[tuple[int, str], tuple[dict[str, Any], dict[str, Any] | None]] = {}
        self._remembered: OrderedDict[tuple[bytes, str], dict[str, Any]] = OrderedDict()

    def remember(self, data: bytes, record: str, row: Mapping[str, Any]) -> None:
        """`row` is what `decode(data, record)` returns: the next decode of the same bytes
        takes a copy of it instead of decoding again (once: the entry is used up). The object
        agents forward their input's bytes to the change feed, which this worker reads back."""
        remembered = self._remembered
        remembered[(data, record)] = dict(row)
        if len(remembered) > REMEMBERED_MAX:
            remembered.popitem(last=False)

    def reader_schema(self, record: str) -> dict[str, Any]:
        """The app's parsed schema for record `record` (e.g. "Order")."""
        schema = self._readers.get(record)
        if schema is None:
            schema = _parse(metadata.load_schema(record, self._schemas_dir))
            self._readers[record] = schema
        return schema

    @staticmethod
    def schema_id(data: bytes) -> int:
        """The writer schema id from the wire header; DecodeError if the header is bad."""
        if len(data) < HEADER_SIZE:
            raise DecodeError(f"message too short for the wire header ({len(data)} bytes)")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(f"bad magic byte {magic & 0xFF} (expected {MAGIC})")
        return schema_id

    def needs_fetch(self, data: bytes | None) -> bool:
        """True when decoding `data` would first have to ask the registry (a blocking call)."""
        if not data or len(data) < HEADER_SIZE:
            return False
        magic, schema_id = _HEADER.unpack_from(data)
        return magic == MAGIC and not self._resolver.is_cached(schema_id)

    async def fetch_schema(self, data: bytes) -> None:
        """Resolve the writer schema of `data` on a worker thread, so a slow or failing registry
        never blocks the event loop; raises DecodeError (unknown id) or TransientError."""
        schema_id = self.schema_id(data)
        await asyncio.get_running_loop().run_in_executor(
            None, self._resolver.writer_schema, schema_id
        )

    async def resolve_subjects(self, subjects: Iterable[str]) -> None:
        """Look up the schema ids `encode` will frame with, on a worker thread, so encoding
        later never calls the registry; raises TransientError while the registry is down."""
        loop = asyncio.get_running_loop()
        for subject in subjects:
            await loop.run_in_executor(None, self._resolver.id_for_subject, subject)

    async def decode_async(self, data: bytes | None, record: str) -> dict[str, Any]:
        """`decode`, with any registry lookup done off the event loop."""
        if data and self.needs_fetch(data):
            await self.fetch_schema(data)
        return self.decode(data, record)

    def decode(self, data: bytes | None, record: str) -> dict[str, Any]:
        """Decode `data` into a dict shaped by the app's reader schema for `record`."""
        if not data:
            raise DecodeError("empty message value")
        if self._remembered:
            row = self._remembered.pop((data, record), None)
            if row is not None:
                return row
        schema_id = self.schema_id(data)
        writer, reader = self._read_plan(schema_id, record)
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            value = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises many types for bad bodies
            raise DecodeError(
                f"cannot decode {record} with writer schema {schema_id}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if buf.tell() != len(data):
            raise DecodeError(
                f"{len(data) - buf.tell()} trailing bytes after the {record} body"
            )
        if not isinstance(value, dict):
            raise DecodeError(f"{record} body did not decode to a record")
        return value

    def _read_plan(
        self, schema_id: int, record: str
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The writer schema, and the reader schema only when it differs: fastavro compares
        the two on every read and resolves field by field when given both."""
        plan = self._read_plans.get((schema_id, record))
        if plan is None:
            writer = self._resolver.writer_schema(schema_id)
            reader = self.reader_schema(record)
            plan = (writer, None if writer == reader else reader)
            self._read_plans[(schema_id, record)] = plan
        return plan

    def encode(self, value: Mapping[str, Any], record: str, subject: str) -> bytes:
        """Encode with the app's schema for `record`, framed with the id registered for
        `subject` (producers of a topic use `<topic>-value`)."""
        schema = self.reader_schema(record)
        schema_id = self._resolver.id_for_subject(subject)
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, schema_id))
        fastavro.schemaless_writer(buf, schema, value if type(value) is dict else dict(value))
        return buf.getvalue()


def build_serde(schema_registry_url: str | None, schemas_dir: Path | None = None) -> AvroSerde:
    """The serde for a configuration: registry when a URL is given, manifest otherwise."""
    resolver: SchemaResolver
    if schema_registry_url:
        resolver = RegistryResolver(schema_registry_url)
    else:
        resolver = ManifestResolver(schemas_dir)
    return AvroSerde(resolver, schemas_dir)
