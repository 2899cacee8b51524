"""Position state, its append-only event history and its coldpath bookkeeping, in ONE
RocksDB-backed Faust table (`positions`), so one changelog partition holds all of a position's
writes in the order they were made.

Keys (position keys are printable text, so NUL and SOH never occur in them):
- positionKey -> position state (JSON bytes). The applied-trade-id set lives inside the state, so
  "this trade is applied" and the position change are one record: a crash between the write and
  the offset commit turns the redelivery into a counted duplicate.
- positionKey + NUL + 8-byte big-endian version -> one history event (JSON). Appending writes one
  small record; the history is never rewritten. Reading it back for a replay is one point lookup
  per version (versions are dense: 1..V).
- positionKey + SOH -> the backdated trade ids applied provisionally and not yet replayed.

The hotpath writes history and pending first, position last; the coldpath writes the rebuilt
position before it removes the replayed trade from pending. A crash keeps a prefix of one
partition's records: if the position record survived, so did everything written before it, and
if it was lost, the redelivered trade is applied again at the same version and overwrites the
same history key. Separate tables would give no such guarantee: their changelogs are different
topics, and the Kafka client may deliver a later record of one before an earlier record of
another (found by the long reliability run with batched position agents: a position survived a
kill -9 without the pending record written before it, ADR 0010).

A bounded in-memory cache of decoded positions saves decoding 1,000 lots per trade. It is valid
for one ownership epoch only (`app.ownership`): after any rebalance another worker may have
changed the positions, so the first read in a new epoch starts from an empty cache. A handler
whose partition was revoked gets `PartitionRevoked` on its first read, before it can load (and
mutate) a position into the cache.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator

import faust
import orjson

from app import ownership
from app.domain.lot_methods import LotMethodSchedule
from app.domain.positions import Position
from app.domain.replay import HistoryEvent
from tables.common import bytes_table

_VERSION = struct.Struct(">Q")
CACHE_SIZE = 10_000


def history_key(position_key: str, version: int) -> bytes:
    return position_key.encode() + b"\x00" + _VERSION.pack(version)


def pending_key(position_key: str) -> bytes:
    return position_key.encode() + b"\x01"


class PositionStore:
    """Load/save positions, their history and their pending backdated trades."""

    def __init__(self, app: faust.App, partitions: int, default_lot_method: str) -> None:
        self.positions = bytes_table(
            app,
            "positions",
            partitions,
            "position state, event history and pending backdated trades per positionKey",
        )
        self.app = app
        self.default_lot_method = default_lot_method
        self._cache: OrderedDict[str, Position] = OrderedDict()
        self._cache_epoch = ownership.epoch(app)

    def _current_cache(self) -> OrderedDict[str, Position]:
        now = ownership.epoch(self.app)
        if now != self._cache_epoch:
            self._cache.clear()
            self._cache_epoch = now
        return self._cache

    def get(self, position_key: str) -> Position | None:
        ownership.ensure_owned()
        cached = self._current_cache().get(position_key)
        if cached is not None:
            self._cache.move_to_end(position_key)
            return cached
        raw = self.positions.get(position_key.encode())
        if raw is None:
            return None
        position = Position.from_state(orjson.loads(raw))
        self._remember(position)
        return position

    def get_or_create(self, position_key: str) -> Position:
        position = self.get(position_key)
        if position is None:
            account, _, symbol = position_key.partition(":")
            position = Position(account, symbol, LotMethodSchedule(self.default_lot_method))
        return position

    def save(self, position: Position) -> None:
        self.positions[position.position_key.encode()] = orjson.dumps(position.to_state())
        self._remember(position)

    def cached(self) -> list[Position]:
        """Positions decoded on this worker in the current epoch (so all owned)."""
        return list(self._current_cache().values())

    def forget(self, position_key: str) -> None:
        self._cache.pop(position_key, None)

    def _remember(self, position: Position) -> None:
        cache = self._current_cache()
        cache[position.position_key] = position
        cache.move_to_end(position.position_key)
        if len(cache) > CACHE_SIZE:
            cache.popitem(last=False)

    def pending_trades(self, position_key: str) -> list[str]:
        raw = self.positions.get(pending_key(position_key))
        return orjson.loads(raw) if raw else []

    def add_pending(self, position_key: str, trade_id: str) -> None:
        pending = self.pending_trades(position_key)
        if trade_id not in pending:
            pending.append(trade_id)
            self.positions[pending_key(position_key)] = orjson.dumps(pending)

    def set_pending(self, position_key: str, trade_ids: list[str]) -> None:
        """Write the ids still waiting for the coldpath (after a replay)."""
        if trade_ids != self.pending_trades(position_key):
            self.positions[pending_key(position_key)] = orjson.dumps(trade_ids)

    def append(self, position_key: str, event: HistoryEvent) -> None:
        self.positions[history_key(position_key, event.version)] = orjson.dumps(event.to_dict())

    def events(self, position_key: str, upto_version: int) -> Iterator[HistoryEvent]:
        """History events 1..upto_version in version order (missing versions are skipped:
        a position created by a contract rule has versions without trades)."""
        for version in range(1, upto_version + 1):
            raw = self.positions.get(history_key(position_key, version))
            if raw is not None:
                yield HistoryEvent.from_dict(orjson.loads(raw))
