"""The stream the fault driver produces: OMS simulator traffic made as messy as production's.

On top of the simulator's orders, executions, quotes, prices and trades (a few percent booked
late, i.e. backdated) it adds what upstream systems really do: re-sends of earlier messages
(exact duplicates, often after a newer version), records keyed by something other than the
object id (the app must re-key them), a few contract rules, and poison messages of every kind the
app must dead-letter. Every poison message carries a `chaos.poison.id` header so the verifier can
tell an injected poison from a valid message that was wrongly dead-lettered.

While `alias_ids` is set (during a schema-registry outage) valid messages are framed with schema
ids the workers have never seen, so decoding them needs the registry that is down.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.producer import CANONICAL_TOPICS
from app.serde import AvroSerde
from app.simulator import OmsSimulator, SimEvent

H_POISON_ID = "chaos.poison.id"
H_POISON_KIND = "chaos.poison.kind"
H_DUPLICATE = "chaos.duplicate"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to produce: topic attribute of `Topics`, key, framed bytes, headers."""

    topic_attr: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def subject_of(topic_attr: str) -> str:
    return f"{getattr(CANONICAL_TOPICS, topic_attr)}-value"


def reframe(data: bytes, schema_id: int) -> bytes:
    """The same Avro body under another schema id (the registry serves the same schema)."""
    return data[:1] + struct.pack(">I", schema_id) + data[5:]


@dataclass(frozen=True, slots=True)
class PoisonKind:
    """One way a message can be poison: either its bytes are broken (`raw` rewrites a valid
    message's bytes) or its content breaks a rule (`changes` to a valid value)."""

    topic_attr: str
    record: str
    name: str
    raw: Callable[[bytes], bytes] | None = None
    changes: tuple[tuple[str, Any], ...] = ()


def poison_kinds(business_date: dt.date) -> list[PoisonKind]:
    """Every input topic gets at least one kind; decode and validate stages are both covered."""
    far = business_date + dt.timedelta(days=400)
    return [
        PoisonKind("orders", "Order", "bad-magic", raw=lambda b: b"\x07" + b[1:]),
        PoisonKind("executions", "Execution", "truncated", raw=lambda b: b[: len(b) // 2]),
        PoisonKind(
            "quotes",
            "Quote",
            "unknown-schema-id",
            raw=lambda b: struct.pack(">bI", 0, 987_654) + b[5:],
        ),
        PoisonKind("quote_requests", "QuoteRequest", "empty-value", raw=lambda b: b""),
        PoisonKind("orders", "Order", "unknown-enum", changes=(("side", "UNKNOWN"),)),
        PoisonKind("trades", "Trade", "zero-quantity", changes=(("quantity", Decimal(0)),)),
        PoisonKind("trades", "Trade", "far-future", changes=(("effectiveDate", far),)),
        PoisonKind(
            "market_prices", "MarketPrice", "negative-price", changes=(("price", Decimal(-1)),)
        ),
        PoisonKind(
            "contracts", "ContractRule", "bad-position-key", changes=(("positionKey", "{id}"),)
        ),
    ]


ID_FIELDS = {"Order": "orderId", "Execution": "execId", "Quote": "quoteId", "Trade": "tradeId"}


@dataclass
class StreamCounts:
    """What was produced, by category: the verifier recomputes all of it from the topics."""

    valid: int = 0
    duplicates: int = 0
    rekeyed: int = 0
    poison: int = 0
    aliased: int = 0
    contract_rules: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.valid + self.duplicates + self.poison


class ChaosStream:
    """A deterministic (by seed) sequence of `Outgoing` messages of a given length."""

    def __init__(
        self,
        serde: AvroSerde,
        *,
        seed: int,
        business_date: dt.date,
        total: int,
        poison: int,
        duplicate_rate: float = 0.03,
        rekey_rate: float = 0.04,
        contract_rules: int = 2,
    ) -> None:
        self.serde = serde
        self.rng = random.Random(seed)
        self.business_date = business_date
        self.total = total
        self.sim = OmsSimulator(seed=seed, business_date=business_date)
        self.duplicate_rate = duplicate_rate
        self.rekey_rate = rekey_rate
        self.alias_ids: dict[str, int] | None = None
        self.counts = StreamCounts()
        self._recent: deque[Outgoing] = deque(maxlen=400)
        self._kinds = poison_kinds(business_date)
        self._templates = self._make_templates(seed)
        self._poison_at = set(self.rng.sample(range(total), min(poison, total)))
        first_half = range(total // 10, max(total // 2, total // 10 + contract_rules + 1))
        self._rules_at = set(self.rng.sample(first_half, contract_rules))

    # -- building blocks -------------------------------------------------------------------
    def _make_templates(self, seed: int) -> dict[str, dict[str, Any]]:
        sim = OmsSimulator(seed=seed + 10_000, business_date=self.business_date)
        templates: dict[str, dict[str, Any]] = {}
        wanted = {kind.record for kind in self._kinds} - {"ContractRule"}
        for event in sim.events():
            templates.setdefault(event.record, event.value)
            if wanted <= templates.keys():
                break
        templates["ContractRule"] = self._rule_value("TEMPLATE:X", "LIFO", 0)
        return templates

    def _rule_value(self, position_key: str, method: str, n: int) -> dict[str, Any]:
        return {
            "eventId": f"RULE-{n}",
            "sequence": 1,
            "eventTime": dt.datetime.combine(self.business_date, dt.time(9), dt.UTC),
            "positionKey": position_key,
            "lotMethod": method,
            "effectiveFrom": self.business_date - dt.timedelta(days=2),
            "correlationId": None,
            "causationId": None,
            "source": "chaos",
        }

    def _encode(self, topic_attr: str, record: str, value: dict[str, Any]) -> bytes:
        data = self.serde.encode(value, record, subject_of(topic_attr))
        if self.alias_ids is not None and subject_of(topic_attr) in self.alias_ids:
            self.counts.aliased += 1
            return reframe(data, self.alias_ids[subject_of(topic_attr)])
        return data

    def _poison(self, n: int) -> Outgoing:
        kind = self._kinds[n % len(self._kinds)]
        poison_id = f"POISON-{n}"
        value = copy.deepcopy(self._templates[kind.record])
        value["eventId"] = f"EVT-{poison_id}"
        if kind.record in ID_FIELDS:  # if it were ever applied, it would not hide a real row
            value[ID_FIELDS[kind.record]] = poison_id
        for name, change in kind.changes:
            value[name] = change.format(id=poison_id) if isinstance(change, str) else change
        data = self.serde.encode(value, kind.record, subject_of(kind.topic_attr))
        if kind.raw is not None:
            data = kind.raw(data)
        self.counts.poison += 1
        headers = ((H_POISON_ID, poison_id.encode()), (H_POISON_KIND, kind.name.encode()))
        return Outgoing(kind.topic_attr, poison_id, data, headers)

    def _valid(self, event: SimEvent) -> Outgoing:
        key = event.key
        if self.rng.random() < self.rekey_rate and event.topic_attr in ("trades", "orders"):
            key = str(event.value["account"])  # not the object id: must be re-keyed
            self.counts.rekeyed += 1
        data = self._encode(event.topic_attr, event.record, event.value)
        self.counts.valid += 1
        return Outgoing(event.topic_attr, key, data)

    # -- the stream ------------------------------------------------------------------------
    def messages(self) -> Iterator[Outgoing]:
        events = self.sim.events()
        poison_n = 0
        rule_n = 0
        for i in range(self.total):
            if i in self._poison_at:
                out = self._poison(poison_n)
                poison_n += 1
            elif i in self._rules_at:
                rule_n += 1
                position_key = (
                    f"{self.rng.choice(self.sim.accounts)}:{self.rng.choice(self.sim.symbols)}"
                )
                method = self.rng.choice(("LIFO", "HIFO"))
                value = self._rule_value(position_key, method, rule_n)
                out = Outgoing(
                    "contracts", position_key, self._encode("contracts", "ContractRule", value)
                )
                self.counts.valid += 1
                self.counts.contract_rules += 1
            elif self._recent and self.rng.random() < self.duplicate_rate:
                earlier = self.rng.choice(self._recent)
                out = Outgoing(
                    earlier.topic_attr, earlier.key, earlier.value, ((H_DUPLICATE, b"1"),)
                )
                self.counts.duplicates += 1
            else:
                out = self._valid(next(events))
                self._recent.append(out)
            self.counts.by_topic[out.topic_attr] = self.counts.by_topic.get(out.topic_attr, 0) + 1
            yield out
