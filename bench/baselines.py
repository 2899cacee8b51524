"""Same-run baselines the app is compared with, each run as its own process on the same topic data:

- `raw-ingest`: the practical limit for Python on the machine. aiokafka `getmany` batches, the
  same Avro decode as the app (writer + reader schema), the same validation and version rule
  (`app.domain.objects`), one rocksdict `WriteBatch` per batch, the same outputs as the app
  (a changelog record per table write and a change-feed record per applied version, produced
  with `send_batch`), offsets committed after each batch. No framework.
- `quix-ingest`: the same workload as a Quix Streams application: stateful (RocksDB state with
  changelog topics), the same decode, validation and version rule, applied versions to a
  change-feed topic.
- `raw-recover`: rebuilding a table from its changelog with `getmany` + `WriteBatch`.

Usage: `python -m bench.baselines MODE --bootstrap H:P --topic T ...` prints one JSON line
(`bench.common.Window` fields). Only the standard library is imported at module level because
the Quix baseline runs in a separate virtualenv (Quix Streams pins an older confluent-kafka than
the app) where neither Faust nor aiokafka is installed.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HEADER = struct.Struct(">bI")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _decoder(schema_path: Path) -> Callable[[bytes], dict[str, Any]]:
    """Confluent-framed Avro decode as the app does it (writer and reader schema both given,
    so schema resolution runs; trailing bytes rejected)."""
    import fastavro

    raw = json.loads(schema_path.read_text())
    writer = fastavro.parse_schema(raw, _write_hint=False, _force=True)
    reader = fastavro.parse_schema(json.loads(schema_path.read_text()), _force=True)
    read = fastavro.schemaless_reader

    def decode(data: bytes) -> dict[str, Any]:
        buf = io.BytesIO(data)
        buf.seek(HEADER.size)
        value = read(buf, writer, reader)
        if buf.tell() != len(data):
            raise ValueError("trailing bytes")
        return value

    return decode


def _cpu_of(pid: int | None) -> float:
    """CPU seconds of another process (the broker), 0 when not given."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Progress:
    """First/last progress marks, measured the same way as for the app's worker."""

    def __init__(self, target: int, broker_pid: int | None = None) -> None:
        self.broker_pid = broker_pid
        self.broker_cpu = (0.0, 0.0)
        self.target = target
        self.done = 0
        self.first: tuple[float, float, int] | None = None
        self.last: tuple[float, float] | None = None
        self.started = time.perf_counter()

    def add(self, n: int) -> None:
        if self.first is None:
            self.first = (time.perf_counter(), time.process_time(), 0)
            self.broker_cpu = (_cpu_of(self.broker_pid), 0.0)
        self.done += n
        if self.done >= self.target and self.last is None:
            self.last = (time.perf_counter(), time.process_time())
            self.broker_cpu = (self.broker_cpu[0], _cpu_of(self.broker_pid))

    @property
    def finished(self) -> bool:
        return self.last is not None

    def result(self, **extra: Any) -> dict[str, Any]:
        assert self.first is not None and self.last is not None
        t0, c0, _ = self.first
        t1, c1 = self.last
        return {
            "events": self.done,
            "seconds": t1 - t0,
            "cpu_seconds": c1 - c0,
            "peak_rss_mb": _peak_rss_mb(),
            "ready_s": t0 - self.started,
            "extra": {"broker_cpu_s": self.broker_cpu[1] - self.broker_cpu[0], **extra},
        }


# -- raw pipeline ---------------------------------------------------------------------------------
async def raw_ingest(args: argparse.Namespace) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.partitioner import murmur2
    from rocksdict import Options, Rdict, WriteBatch

    from app.domain.objects import OBJECT_TYPES, next_version, validate_object

    object_type = OBJECT_TYPES["Order"]
    decode = _decoder(Path(args.schema))
    db = Rdict(args.db, Options(raw_mode=True))
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, linger_ms=5, max_batch_size=1 << 20, acks=1
    )
    await producer.start()
    await consumer.start()
    progress = _Progress(args.expect, args.broker_pid)
    applied = stale = poison = 0
    type_header = b"Order"
    try:
        while not progress.finished:
            batches = await consumer.getmany(timeout_ms=200, max_records=args.batch)
            if not batches:
                continue
            write = WriteBatch(raw_mode=True)
            latest: dict[bytes, bytes] = {}
            changelog: dict[int, Any] = {}
            feed: dict[int, Any] = {}
            count = 0
            for tp, messages in batches.items():
                for message in messages:
                    count += 1
                    try:
                        row = decode(message.value)
                        validate_object(object_type, row)
                    except Exception:
                        poison += 1
                        continue
                    key = row["orderId"].encode()
                    sequence = row["sequence"]
                    stored = latest.get(key)
                    if stored is None:
                        stored = db.get(key)
                    updated = next_version(stored, sequence, message.value)
                    if updated is None:
                        stale += 1
                        continue
                    latest[key] = updated
                    write.put(key, updated)
                    _append(producer, changelog, tp.partition, key, updated, None)
                    change_key = b"Order:" + key
                    part = (murmur2(change_key) & 0x7FFFFFFF) % args.partitions
                    headers = [("object.type", type_header), ("object.sequence", b"%d" % sequence)]
                    _append(producer, feed, part, change_key, message.value, headers)
                    applied += 1
            db.write(write)
            sends = [
                await producer.send_batch(batch, topic, partition=part)
                for topic, parts in ((args.changelog, changelog), (args.out, feed))
                for part, batch in parts.items()
            ]
            for sent in sends:
                await sent
            await consumer.commit()
            progress.add(count)
    finally:
        await consumer.stop()
        await producer.stop()
        db.close()
    return progress.result(applied=applied, stale=stale, poison=poison)


def _append(
    producer: Any,
    batches: dict[int, Any],
    partition: int,
    key: bytes,
    value: bytes,
    headers: list[tuple[str, bytes]] | None,
) -> None:
    batch = batches.get(partition)
    if batch is None:
        batch = batches[partition] = producer.create_batch()
    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
        raise RuntimeError("batch full: raise max_batch_size")


async def raw_recover(args: argparse.Namespace) -> dict[str, Any]:
    """Read a changelog topic to its end offsets and write every record into rocksdict."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from rocksdict import Options, Rdict, WriteBatch

    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    db = Rdict(args.db, Options(raw_mode=True))
    progress = _Progress(args.expect, args.broker_pid)
    try:
        tps = [TopicPartition(args.topic, p) for p in range(args.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not progress.finished:
            batches = await consumer.getmany(timeout_ms=200, max_records=args.batch)
            write = WriteBatch(raw_mode=True)
            count = 0
            for messages in batches.values():
                for message in messages:
                    if message.value is None:
                        write.delete(message.key)
                    else:
                        write.put(message.key, message.value)
                    count += 1
            if count:
                db.write(write)
                progress.add(count)
    finally:
        await consumer.stop()
        db.close()
    return progress.result()


# -- Quix Streams ---------------------------------------------------------------------------------
def quix_ingest(args: argparse.Namespace) -> dict[str, Any]:
    import quixstreams
    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer, Serializer
    from quixstreams.state.rocksdb import RocksDBOptions

    from app.domain.objects import OBJECT_TYPES, next_version, validate_object

    object_type = OBJECT_TYPES["Order"]
    decode = _decoder(Path(args.schema))

    class ConfluentAvro(Deserializer):
        """Same decode and validation as the app; keeps the original bytes for the feed."""

        def __call__(self, value: bytes, ctx: Any) -> Any:
            row = decode(value)
            validate_object(object_type, row)
            return (row["sequence"], value)

    class SecondOfPair(Serializer):
        def __call__(self, value: tuple[bytes, bytes], ctx: Any) -> bytes:
            return value[1]

    progress = _Progress(args.expect, args.broker_pid)
    counts = {"applied": 0, "stale": 0}
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.db,
        loglevel="WARNING",
        rocksdb_options=RocksDBOptions(dumps=bytes, loads=bytes),
        consumer_extra_config={"partition.assignment.strategy": "range"},
    )
    source = app.topic(args.topic, key_deserializer="bytes", value_deserializer=ConfluentAvro())
    feed = app.topic(args.out, key_serializer="bytes", value_serializer=SecondOfPair())

    def version_rule(
        value: tuple[int, bytes], key: bytes, timestamp: int, headers: Any, state: Any
    ) -> tuple[bytes, bytes] | None:
        sequence, message = value
        updated = next_version(state.get(b"v"), sequence, message)
        progress.add(1)
        if progress.finished:
            app.stop()
        if updated is None:
            counts["stale"] += 1
            return None
        state.set(b"v", updated)
        counts["applied"] += 1
        return (b"Order:" + key, message)

    sdf = app.dataframe(source)
    sdf = sdf.apply(version_rule, stateful=True, metadata=True)
    sdf = sdf.filter(lambda message: message is not None)
    sdf.to_topic(feed, key=lambda value: value[0])
    app.run()
    return progress.result(version=quixstreams.__version__, **counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    parser.add_argument("mode", choices=("raw-ingest", "quix-ingest", "raw-recover"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True, help="messages to process")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--schema", default=str(REPO / "schemas" / "Order.avsc"))
    parser.add_argument("--group", default="bench-baseline")
    parser.add_argument("--db", required=True, help="state directory")
    parser.add_argument("--out", default="", help="change-feed topic")
    parser.add_argument("--changelog", default="", help="changelog topic (raw-ingest)")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--broker-pid", type=int, default=0, help="measure its CPU too")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.mode == "quix-ingest":
        result = quix_ingest(args)
    else:
        import asyncio

        runner = raw_ingest if args.mode == "raw-ingest" else raw_recover
        result = asyncio.run(runner(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
