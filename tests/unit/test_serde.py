"""The serde: round trips, evolution, and every malformed input as DecodeError."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import io
import random
import struct
from decimal import Decimal

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import metadata
from app.errors import DecodeError, SchemaRegistryUnavailable
from app.serde import REMEMBERED_MAX, AvroSerde, ManifestResolver, RegistryResolver
from app.simulator import OmsSimulator

SERDE = AvroSerde(ManifestResolver())


def sample_records() -> dict[str, tuple[str, dict]]:
    """One realistic record per input record type, from the simulator."""
    sim = OmsSimulator(seed=7, business_date=dt.date(2026, 11, 20))
    found: dict[str, tuple[str, dict]] = {}
    for event in sim.events():
        if event.record not in found:
            topic = getattr(__import__("app.config").config.Topics(), event.topic_attr)
            found[event.record] = (f"{topic}-value", event.value)
        if len(found) == 6:
            return found
    raise AssertionError("unreachable")


SAMPLES = sample_records()


@pytest.mark.parametrize("record", sorted(SAMPLES))
def test_round_trip_preserves_every_value(record: str) -> None:
    subject, value = SAMPLES[record]
    data = SERDE.encode(value, record, subject)
    assert data[0] == 0
    assert SERDE.schema_id(data) == SERDE._resolver.id_for_subject(subject)
    decoded = SERDE.decode(data, record)
    assert decoded == value
    for name, v in value.items():
        if isinstance(v, Decimal):
            assert isinstance(decoded[name], Decimal) and decoded[name] == v


def _evolved(schema: dict, extra: dict | None = None, drop: str | None = None) -> dict:
    evolved = copy.deepcopy(schema)
    if extra:
        evolved["fields"].append(extra)
    if drop:
        evolved["fields"] = [f for f in evolved["fields"] if f["name"] != drop]
    return evolved


class _FixedResolver:
    def __init__(self, schemas: dict[int, dict]) -> None:
        self.schemas = {k: fastavro.parse_schema(v) for k, v in schemas.items()}

    def writer_schema(self, schema_id: int) -> dict:
        if schema_id not in self.schemas:
            raise DecodeError(f"unknown schema id {schema_id}")
        return self.schemas[schema_id]

    def id_for_subject(self, subject: str) -> int:
        return 99


def _frame(schema_id: int, schema: dict, value: dict) -> bytes:
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), value)
    return buf.getvalue()


def test_writer_with_added_optional_field_decodes_with_reader_schema() -> None:
    _subject, value = SAMPLES["Order"]
    base = metadata.load_schema("Order")
    writer = _evolved(base, {"name": "venueHint", "type": ["null", "string"], "default": None,
                             "doc": "new field"})
    serde = AvroSerde(_FixedResolver({42: writer}))
    decoded = serde.decode(_frame(42, writer, {**value, "venueHint": "XNAS"}), "Order")
    assert decoded == value  # the unknown field is skipped, the rest is intact


def test_writer_without_an_optional_field_gets_the_reader_default() -> None:
    _subject, value = SAMPLES["Order"]
    writer = _evolved(metadata.load_schema("Order"), drop="source")
    serde = AvroSerde(_FixedResolver({43: writer}))
    without = {k: v for k, v in value.items() if k != "source"}
    decoded = serde.decode(_frame(43, writer, without), "Order")
    assert decoded["source"] is None
    assert decoded["orderId"] == value["orderId"]


def test_new_enum_symbol_reads_as_the_default() -> None:
    _subject, value = SAMPLES["Order"]
    writer = copy.deepcopy(metadata.load_schema("Order"))
    for f in writer["fields"]:
        if f["name"] == "status":
            f["type"]["symbols"].append("PENDING_CANCEL")
    serde = AvroSerde(_FixedResolver({44: writer}))
    decoded = serde.decode(_frame(44, writer, {**value, "status": "PENDING_CANCEL"}), "Order")
    assert decoded["status"] == "UNKNOWN"


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"\x00\x00\x00", "too short"),
        (b"\x01\x00\x00\x00\x01abc", "bad magic"),
        (b"\x00\x00\x00\x03\xe7\x02", "unknown schema id"),
    ],
)
def test_malformed_headers_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError):
        SERDE.decode(data, "Order")


def test_truncated_body_and_trailing_bytes_raise_decode_error() -> None:
    subject, value = SAMPLES["Order"]
    data = SERDE.encode(value, "Order", subject)
    for cut in (6, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError):
            SERDE.decode(data[:cut], "Order")
    with pytest.raises(DecodeError, match="trailing"):
        SERDE.decode(data + b"\x00\x00", "Order")


def test_wrong_shape_raises_decode_error() -> None:
    # A valid Trade framed with the Order id: the body does not parse as an Order.
    _, trade = SAMPLES["Trade"]
    data = SERDE.encode(trade, "Trade", "trade-events-value")
    order_id = SERDE._resolver.id_for_subject("order-events-value")
    with pytest.raises(DecodeError):
        SERDE.decode(struct.pack(">bI", 0, order_id) + data[5:], "Order")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        SERDE.decode(data, "Order")


def test_fuzz_100k_mutations_only_raise_decode_error() -> None:
    """100,000 mutated valid messages (bit flips, cuts, splices): DecodeError or a dict."""
    rng = random.Random(1234)
    seeds = [SERDE.encode(v, r, s) for r, (s, v) in SAMPLES.items()]
    records = list(SAMPLES)
    decoded = failed = 0
    for i in range(100_000):
        data = bytearray(rng.choice(seeds))
        mode = i % 4
        if mode == 0:
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(data))
                data[pos] ^= 1 << rng.randrange(8)
        elif mode == 1:
            del data[rng.randrange(len(data)) :]
        elif mode == 2:
            data[5:] = rng.randbytes(rng.randint(0, 80))
        else:
            pos = rng.randrange(5, len(data))
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
        try:
            result = SERDE.decode(bytes(data), rng.choice(records))
            assert isinstance(result, dict)
            decoded += 1
        except DecodeError:
            failed += 1
    assert decoded + failed == 100_000
    assert failed > 10_000  # the mutations really did produce garbage


def test_registry_outage_is_transient_not_poison() -> None:
    from app.broker import free_port

    resolver = RegistryResolver(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with pytest.raises(SchemaRegistryUnavailable):
        resolver.writer_schema(1)


def test_registry_404_is_poison(http_stub) -> None:
    url = http_stub({"/schemas/ids/77": (404, {"error_code": 40403, "message": "not found"})})
    resolver = RegistryResolver(url)
    with pytest.raises(DecodeError):
        resolver.writer_schema(77)


def test_registry_503_is_transient_then_recovers(http_stub) -> None:
    import orjson

    schema_str = orjson.dumps(metadata.load_schema("Order")).decode()
    routes = {"/schemas/ids/5": (503, {"error_code": 50301, "message": "down"})}
    url = http_stub(routes)
    resolver = RegistryResolver(url)
    with pytest.raises(SchemaRegistryUnavailable):
        resolver.writer_schema(5)
    routes["/schemas/ids/5"] = (200, {"schema": schema_str})
    assert resolver.writer_schema(5)["name"].endswith("Order")


def test_decode_dates_and_timestamps_are_typed() -> None:
    _, trade = SAMPLES["Trade"]
    decoded = SERDE.decode(SERDE.encode(trade, "Trade", "trade-events-value"), "Trade")
    assert isinstance(decoded["effectiveDate"], dt.date)
    assert decoded["tradeTime"].tzinfo is not None


def test_a_remembered_row_is_served_once_without_decoding_again(monkeypatch) -> None:
    """The object agents forward their input's bytes to the change feed, which the same worker
    decodes again: a remembered row saves that second decode (one decode per change)."""
    serde = AvroSerde(ManifestResolver())
    subject, row = SAMPLES["Order"]
    data = serde.encode(row, "Order", subject)
    decoded = serde.decode(data, "Order")
    serde.remember(data, "Order", decoded)
    decoded["status"] = "changed by the agent afterwards"

    def no_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(fastavro, "schemaless_reader", no_decode)
    served = serde.decode(bytes(data), "Order")  # equal bytes, another object (as fetched)
    assert served == row and served is not decoded
    with pytest.raises(DecodeError, match="decoded again"):
        serde.decode(data, "Order")  # used up: the next reader decodes


def test_remembered_rows_are_bounded() -> None:
    serde = AvroSerde(ManifestResolver())
    subject, row = SAMPLES["Order"]
    for n in range(REMEMBERED_MAX + 10):
        serde.remember(serde.encode({**row, "sequence": n}, "Order", subject), "Order", row)
    assert len(serde._remembered) == REMEMBERED_MAX
