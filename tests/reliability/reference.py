"""The expected state, rebuilt from the input topics by a single-threaded reference model.

Shares no logic with the app: its own Avro decoding (fastavro with the registry catalog), its own
version rule (max sequence per id), and positions from tests/unit/reference_lots.py (Fractions,
naive relief) replayed over all accepted trades sorted in economic order. Messages the injector
marked as poison are expected in a DLQ and nowhere else; every other message is valid.
"""

from __future__ import annotations

import datetime as dt
import io
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import fastavro
import orjson

from tests.reliability.registry_standin import SchemaCatalog
from tests.reliability.workload import H_POISON_ID
from tests.unit.reference_lots import RefBook, RefTrade, run_reference

OBJECT_ID_FIELDS = {
    "orders": ("Order", "orderId"),
    "executions": ("Execution", "execId"),
    "quote_requests": ("QuoteRequest", "quoteReqId"),
    "quotes": ("Quote", "quoteId"),
}


@dataclass(frozen=True, slots=True)
class Rec:
    """One record read back from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]


class CatalogDecoder:
    """Confluent-framed Avro -> dict, writer schema by id from the catalog (no reader schema:
    the verifier reads what was written)."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self.catalog = catalog
        self._parsed: dict[int, Any] = {}

    def decode(self, data: bytes) -> dict[str, Any]:
        magic, schema_id = struct.unpack_from(">bI", data)
        if magic != 0:
            raise ValueError(f"bad magic {magic}")
        schema = self._parsed.get(schema_id)
        if schema is None:
            schema = fastavro.parse_schema(orjson.loads(self.catalog.by_id[schema_id]))
            self._parsed[schema_id] = schema
        buf = io.BytesIO(data)
        buf.seek(5)
        return fastavro.schemaless_reader(buf, schema, None)


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    sequence: int
    event_id: str
    source: str = ""  # topic[partition]@offset of the input, for the humans reading a failure


@dataclass(frozen=True, slots=True)
class TradeFact:
    position_key: str
    trade: RefTrade
    source: str = ""


@dataclass
class Expected:
    """What a correct system holds once every input is processed."""

    objects: dict[tuple[str, str], ObjectVersion] = field(default_factory=dict)
    trades: dict[str, TradeFact] = field(default_factory=dict)
    rules: dict[str, dict[dt.date, tuple[int, str]]] = field(default_factory=dict)
    prices: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    poison: dict[str, Rec] = field(default_factory=dict)
    messages: int = 0
    valid_messages: int = 0

    def position_keys(self) -> set[str]:
        return {fact.position_key for fact in self.trades.values()} | set(self.rules)

    def book(self, position_key: str, default_method: str = "FIFO") -> RefBook:
        """The position from scratch: accepted trades in economic order, contract rules."""
        trades = sorted(
            (f.trade for f in self.trades.values() if f.position_key == position_key),
            key=lambda t: (t.effective_date, t.trade_time, t.trade_id),
        )
        rules = {day: method for day, (_, method) in self.rules.get(position_key, {}).items()}
        return run_reference(trades, default_method, rules)


def _ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def build_expected(
    inputs: Iterable[Rec], topic_attr_of: Mapping[str, str], decoder: CatalogDecoder
) -> Expected:
    """Replay the input topics (each partition in offset order) through the reference rules."""
    expected = Expected()
    for rec in sorted(inputs, key=lambda r: (r.topic, r.partition, r.offset)):
        expected.messages += 1
        poison_id = rec.headers.get(H_POISON_ID)
        if poison_id is not None:
            expected.poison[poison_id.decode()] = rec
            continue
        expected.valid_messages += 1
        attr = topic_attr_of[rec.topic]
        row = decoder.decode(rec.value or b"")
        if attr in OBJECT_ID_FIELDS:
            type_name, id_field = OBJECT_ID_FIELDS[attr]
            key = (type_name, row[id_field])
            current = expected.objects.get(key)
            if current is None or row["sequence"] > current.sequence:
                expected.objects[key] = ObjectVersion(
                    row["sequence"], row["eventId"], f"{rec.topic}[{rec.partition}]@{rec.offset}"
                )
        elif attr == "trades":
            expected.trades.setdefault(
                row["tradeId"],
                TradeFact(
                    f"{row['account']}:{row['symbol']}",
                    RefTrade(
                        row["tradeId"],
                        row["side"],
                        Fraction(row["quantity"]),
                        Fraction(row["price"]),
                        row["effectiveDate"],
                        _ms(row["tradeTime"]),
                    ),
                    f"{rec.topic}[{rec.partition}]@{rec.offset}",
                ),
            )
        elif attr == "contracts":
            rules = expected.rules.setdefault(row["positionKey"], {})
            current_rule = rules.get(row["effectiveFrom"])
            if current_rule is None or row["sequence"] >= current_rule[0]:
                rules[row["effectiveFrom"]] = (row["sequence"], row["lotMethod"])
        elif attr == "market_prices":
            current_price = expected.prices.get(row["symbol"])
            if current_price is None or row["sequence"] > current_price[0]:
                expected.prices[row["symbol"]] = (row["sequence"], row["price"])
    return expected
