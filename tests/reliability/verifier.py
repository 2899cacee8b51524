"""The consistency verifier: expected state (reference.py) against what the system shows.

Run it once the system is quiet (every partition at lag 0). It reads the input topics, the
output topics (TradeApplied, ProvisionalTradeApplied, HistoricalPositionCorrected), the change
feed and the DLQs from the broker, asks the REST API of a randomly chosen worker for every
object and position, and reports Jepsen-style counts:

- lost: an accepted input whose effect is missing (object not at its latest sequence and that
  sequence never published; trade absent from its position's history or from the outputs; a
  backdated trade never corrected);
- double_applied: a trade twice in a position's history, or published at two versions;
- stale_overwrite: an older version replaced a newer one (object sequence or position version
  below one already published for it);
- nonmonotonic: a record whose sequence/version is below one published earlier for the same key
  on the same topic (what a client following that topic sees going backwards);
- dlq: distinct injected poison messages found in a DLQ (must equal the injected count), with
  dlq_unexpected for valid messages dead-lettered;
- mismatched_positions: REST position differs from the reference replay.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.objects import H_SEQUENCE
from agents.positions import PRICE_SEQUENCE_BITS
from app.config import Topics
from tests.reliability.reference import CatalogDecoder, Expected, Rec
from tests.reliability.workload import H_POISON_ID

MAX_EXAMPLES = 25
REST_CONCURRENCY = 6


# -- reading the broker -----------------------------------------------------------------------
async def read_topics(bootstrap: str, topics: Sequence[str]) -> list[Rec]:
    """Every record of `topics` up to their current end offsets (no consumer group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Rec] = []
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(await _partitions(consumer, topic))
        ]
        if not partitions:
            return records
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset < ends[tp]:
                        headers = {k: v for k, v in (m.headers or ())}
                        records.append(Rec(m.topic, m.partition, m.offset, m.key, m.value, headers))
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return records


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(20):
        found = consumer.partitions_for_topic(topic)
        if found:
            return found
        await consumer._client.force_metadata_update()  # topic may be new to this client
    return set()


# -- asking the web API -----------------------------------------------------------------------
async def get_json(
    session: aiohttp.ClientSession, urls: Sequence[str], path: str, attempts: int = 20
) -> tuple[int, Any]:
    """GET `path` from a random worker; retry answers that mean 'not now' (503, no answer)."""
    status, body = 0, None
    for attempt in range(attempts):
        url = random.choice(urls) + path
        try:
            async with session.get(url) as resp:
                status, body = resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            status, body = 0, None
        if status not in (0, 503):
            return status, body
        await asyncio.sleep(min(0.1 * 2**attempt, 1.0))
    return status, body


@dataclass
class Observed:
    """What the system shows at quiet."""

    objects: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    positions: dict[str, tuple[int, Any]] = field(default_factory=dict)
    histories: dict[str, tuple[int, Any]] = field(default_factory=dict)
    poison_objects: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    applied: list[tuple[str, str, int]] = field(default_factory=list)  # (topic, tradeId, version)
    applied_keys: list[tuple[str, str, int]] = field(default_factory=list)  # (topic, key, version)
    corrected: list[tuple[str, str, int]] = field(default_factory=list)  # (key, tradeId, new)
    changes: list[tuple[str, int]] = field(default_factory=list)  # (key, sequence) topic order
    dlq: list[Rec] = field(default_factory=list)


async def observe_rest(expected: Expected, worker_urls: Sequence[str]) -> Observed:
    observed = Observed()
    gate = asyncio.Semaphore(REST_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def fetch(store: dict, key: Any, path: str) -> None:
            async with gate:
                store[key] = await get_json(session, worker_urls, path)

        jobs = [
            fetch(observed.objects, key, f"/v1/objects/{key[0]}/{key[1]}")
            for key in expected.objects
        ]
        for position_key in expected.position_keys():
            jobs.append(fetch(observed.positions, position_key, f"/v1/positions/{position_key}"))
            jobs.append(
                fetch(observed.histories, position_key, f"/v1/positions/{position_key}/events")
            )
        for poison_id in expected.poison:
            for type_name in ("Order", "Execution", "Quote", "QuoteRequest"):
                jobs.append(
                    fetch(
                        observed.poison_objects,
                        (type_name, poison_id),
                        f"/v1/objects/{type_name}/{poison_id}",
                    )
                )
        await asyncio.gather(*jobs)
    return observed


def observe_topics(
    observed: Observed, topics: Topics, records: Iterable[Rec], decoder: CatalogDecoder
) -> None:
    """Fill the topic-derived observations (records in partition order)."""
    dlq_topics = {topics.dlq(t) for t in topics.inputs()}
    for rec in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        if rec.topic in dlq_topics:
            observed.dlq.append(rec)
        elif rec.topic == topics.changes:
            sequence = rec.headers.get(H_SEQUENCE)
            if rec.key is not None and sequence is not None:
                key = rec.key.decode()
                value = int(sequence)
                if key.startswith("Position:"):  # version << bits | price sequence
                    value >>= PRICE_SEQUENCE_BITS
                observed.changes.append((key, value))
        elif rec.topic in (topics.trade_applied, topics.provisional):
            row = decoder.decode(rec.value or b"")
            observed.applied.append((rec.topic, row["tradeId"], row["version"]))
            observed.applied_keys.append((rec.topic, row["positionKey"], row["version"]))
        elif rec.topic == topics.corrected:
            row = decoder.decode(rec.value or b"")
            observed.corrected.append((row["positionKey"], row["tradeId"], row["newVersion"]))


# -- comparing --------------------------------------------------------------------------------
@dataclass
class Report:
    """Counts of anomalies, and a few examples of each for the humans."""

    messages: int = 0
    valid: int = 0
    objects: int = 0
    trades: int = 0
    positions: int = 0
    poison_injected: int = 0
    lost: int = 0
    double_applied: int = 0
    stale_overwrite: int = 0
    nonmonotonic: int = 0
    dlq: int = 0
    dlq_records: int = 0
    dlq_unexpected: int = 0
    poison_applied: int = 0
    mismatched_positions: int = 0
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def note(self, kind: str, text: str) -> None:
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append(text)

    def figures(self) -> dict[str, int]:
        names = (
            "messages",
            "valid",
            "objects",
            "trades",
            "positions",
            "poison_injected",
            "lost",
            "double_applied",
            "stale_overwrite",
            "nonmonotonic",
            "dlq",
            "dlq_records",
            "dlq_unexpected",
            "poison_applied",
            "mismatched_positions",
        )
        return {name: getattr(self, name) for name in names}

    def failures(self) -> list[str]:
        """The pass figures that do not hold (empty = pass). nonmonotonic is reported only:
        at-least-once delivery legitimately repeats old records after a crash."""
        checks = {
            "lost": self.lost == 0,
            "double_applied": self.double_applied == 0,
            "stale_overwrite": self.stale_overwrite == 0,
            "mismatched_positions": self.mismatched_positions == 0,
            "dlq == poison_injected": self.dlq == self.poison_injected,
            "dlq_unexpected": self.dlq_unexpected == 0,
            "poison_applied": self.poison_applied == 0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        return [f"{name}: {self.figures()} examples={dict(self.examples)}" for name in failed]


def as_fraction(text: str | None) -> Fraction | None:
    return None if text is None else Fraction(Decimal(text))


def compare(expected: Expected, observed: Observed, default_method: str = "FIFO") -> Report:
    report = Report(
        messages=expected.messages,
        valid=expected.valid_messages,
        objects=len(expected.objects),
        trades=len(expected.trades),
        positions=len(expected.position_keys()),
        poison_injected=len(expected.poison),
    )
    lost: set[str] = set()
    doubled: set[str] = set()
    stale: set[str] = set()
    max_published: dict[str, int] = {}
    for key, sequence in observed.changes:
        max_published[key] = max(sequence, max_published.get(key, sequence))
    _check_objects(expected, observed, report, lost, stale, max_published)
    _check_positions(
        expected, observed, report, lost, doubled, stale, max_published, default_method
    )
    _check_outputs(expected, observed, report, lost, doubled)
    _check_dlq(expected, observed, report)
    report.nonmonotonic = (
        _backwards(observed.changes)
        + sum(
            _backwards([(k, v) for t, k, v in observed.applied_keys if t == topic])
            for topic in {t for t, _, _ in observed.applied_keys}
        )
        + _backwards([(k, v) for k, _, v in observed.corrected])
    )
    report.lost, report.double_applied, report.stale_overwrite = len(lost), len(doubled), len(stale)
    return report


def _backwards(stream: Iterable[tuple[str, int]]) -> int:
    """Records whose value is below the highest seen before for the same key."""
    highest: dict[str, int] = {}
    count = 0
    for key, value in stream:
        if value < highest.get(key, value):
            count += 1
        highest[key] = max(value, highest.get(key, value))
    return count


def _check_objects(
    expected: Expected,
    observed: Observed,
    report: Report,
    lost: set[str],
    stale: set[str],
    max_published: Mapping[str, int],
) -> None:
    for (type_name, object_id), want in expected.objects.items():
        status, body = observed.objects.get((type_name, object_id), (0, None))
        label = f"{type_name}/{object_id}"
        got = body.get("sequence") if status == 200 and isinstance(body, dict) else None
        if got == want.sequence and body.get("eventId") == want.event_id:
            continue
        published = max_published.get(f"{type_name}:{object_id}")
        if got is not None and published is not None and got < published:
            stale.add(label)
            report.note("stale_overwrite", f"{label}: serves {got}, published {published}")
        elif published is None or published < want.sequence:
            lost.add(label)
            report.note(
                "lost",
                f"{label} ({want.source}): want seq {want.sequence}, REST {status} {got}, "
                f"feed max {published}",
            )
        else:
            lost.add(label)
            report.note(
                "lost",
                f"{label} ({want.source}): want seq {want.sequence} ({want.event_id}), REST "
                f"{status} {got} {body!r:.120}",
            )
    for (type_name, poison_id), (status, _) in observed.poison_objects.items():
        if status != 404:
            report.poison_applied += 1
            report.note("poison_applied", f"{type_name}/{poison_id}: REST {status}")


def _check_positions(
    expected: Expected,
    observed: Observed,
    report: Report,
    lost: set[str],
    doubled: set[str],
    stale: set[str],
    max_published: Mapping[str, int],
    default_method: str,
) -> None:
    trades_of: dict[str, set[str]] = defaultdict(set)
    for trade_id, fact in expected.trades.items():
        trades_of[fact.position_key].add(trade_id)
    for position_key in expected.position_keys():
        status, body = observed.positions.get(position_key, (0, None))
        if status != 200 or not isinstance(body, dict):
            report.mismatched_positions += 1
            report.note("mismatched_positions", f"{position_key}: REST {status} {body!r:.120}")
            lost.update(f"trade {t}" for t in trades_of[position_key])
            continue
        problems = _position_problems(expected, position_key, body, default_method)
        h_status, history = observed.histories.get(position_key, (0, None))
        events = history.get("events", []) if h_status == 200 and history else []
        versions = [e["version"] for e in events]
        if h_status != 200 or versions != sorted(set(versions)):
            problems.append(f"history {h_status}, versions not unique and increasing")
        if problems:
            report.mismatched_positions += 1
            report.note("mismatched_positions", f"{position_key}: {'; '.join(problems)}")
        published = max(
            max_published.get(f"Position:{position_key}", 0),
            max((v for t, k, v in observed.applied_keys if k == position_key), default=0),
            max((v for k, _, v in observed.corrected if k == position_key), default=0),
        )
        if body.get("version", 0) < published:
            stale.add(f"Position/{position_key}")
            report.note(
                "stale_overwrite",
                f"Position/{position_key}: version {body.get('version')} < {published}",
            )
        counts: dict[str, int] = defaultdict(int)
        for event in events:
            if event["type"] != "CORRECTION":
                counts[event["tradeId"]] += 1
        for trade_id in trades_of[position_key]:
            if counts.get(trade_id, 0) == 0:
                lost.add(f"trade {trade_id}")
                report.note(
                    "lost",
                    f"trade {trade_id} ({expected.trades[trade_id].source}): not in "
                    f"{position_key} history",
                )
            elif counts[trade_id] > 1:
                doubled.add(trade_id)
                report.note(
                    "double_applied",
                    f"trade {trade_id}: {counts[trade_id]}x in {position_key} history",
                )
        for trade_id in set(counts) - trades_of[position_key]:
            report.poison_applied += 1
            report.note("poison_applied", f"{position_key}: unknown trade {trade_id} applied")


def _position_problems(
    expected: Expected, position_key: str, body: Mapping[str, Any], default_method: str
) -> list[str]:
    book = expected.book(position_key, default_method)
    problems = []
    if as_fraction(body.get("quantity")) != book.quantity:
        problems.append(f"quantity {body.get('quantity')} != {float(book.quantity)}")
    if as_fraction(body.get("realizedPnl")) != book.realized:
        problems.append(f"realizedPnl {body.get('realizedPnl')} != {float(book.realized)}")
    want_lots = [(lot.lot_id, lot.quantity, lot.cost) for lot in book.lots]
    got_lots = [
        (lot.get("lotId"), as_fraction(lot.get("quantity")), as_fraction(lot.get("costPrice")))
        for lot in body.get("lots", [])
    ]
    if got_lots != want_lots:
        problems.append(f"lots differ ({len(got_lots)} vs {len(want_lots)})")
    if body.get("status") != "RECONCILED":
        problems.append(f"status {body.get('status')}")
    symbol = position_key.partition(":")[2]
    want_price = expected.prices.get(symbol)
    got_price = as_fraction(body.get("lastPrice"))
    if want_price is not None and got_price != Fraction(want_price[1]):
        problems.append(f"lastPrice {body.get('lastPrice')} != {want_price[1]}")
    return problems


def _check_outputs(
    expected: Expected, observed: Observed, report: Report, lost: set[str], doubled: set[str]
) -> None:
    versions: dict[str, set[int]] = defaultdict(set)
    provisional: set[str] = set()
    for topic, trade_id, version in observed.applied:
        versions[trade_id].add(version)
        if "provisional" in topic:
            provisional.add(trade_id)
    corrected = {trade_id for _, trade_id, _ in observed.corrected}
    for trade_id in expected.trades:
        seen = versions.get(trade_id)
        if not seen:
            lost.add(f"trade {trade_id}")
            report.note(
                "lost",
                f"trade {trade_id} ({expected.trades[trade_id].source}): no "
                "TradeApplied/ProvisionalTradeApplied",
            )
        elif len(seen) > 1:
            doubled.add(trade_id)
            report.note("double_applied", f"trade {trade_id}: published at versions {sorted(seen)}")
        if trade_id in provisional and trade_id not in corrected:
            lost.add(f"correction {trade_id}")
            report.note("lost", f"trade {trade_id}: provisional, never corrected")
    for trade_id in set(versions) - set(expected.trades):
        report.poison_applied += 1
        report.note("poison_applied", f"output for unknown trade {trade_id}")


def _check_dlq(expected: Expected, observed: Observed, report: Report) -> None:
    found: set[str] = set()
    report.dlq_records = len(observed.dlq)
    for rec in observed.dlq:
        poison_id = rec.headers.get(H_POISON_ID)
        if poison_id is None:
            report.dlq_unexpected += 1
            reason = rec.headers.get("dlq.error.message", b"").decode(errors="replace")
            report.note("dlq_unexpected", f"{rec.topic} key={rec.key!r}: {reason}")
        else:
            found.add(poison_id.decode())
    report.dlq = len(found & set(expected.poison))
    for poison_id in sorted(set(expected.poison) - found):
        report.note("poison_missing", f"{poison_id} not dead-lettered")


# -- the whole check --------------------------------------------------------------------------
async def expected_state(bootstrap: str, topics: Topics, decoder: CatalogDecoder) -> Expected:
    """The reference model's state, rebuilt from every input topic."""
    from tests.reliability.reference import build_expected

    attr_of = {getattr(topics, name): name for name in Topics.__dataclass_fields__}
    inputs = await read_topics(bootstrap, list(topics.inputs()))
    return build_expected(inputs, attr_of, decoder)


async def verify(
    bootstrap: str,
    topics: Topics,
    worker_urls: Sequence[str],
    decoder: CatalogDecoder,
    default_method: str = "FIFO",
    expected: Expected | None = None,
) -> Report:
    """Rebuild (unless given), observe, compare. The system must be quiet."""
    if expected is None:
        expected = await expected_state(bootstrap, topics, decoder)
    observed = await observe_rest(expected, worker_urls)
    outputs = [
        topics.trade_applied,
        topics.provisional,
        topics.corrected,
        topics.changes,
        *(topics.dlq(t) for t in topics.inputs()),
    ]
    observe_topics(observed, topics, await read_topics(bootstrap, outputs), decoder)
    return compare(expected, observed, default_method)
