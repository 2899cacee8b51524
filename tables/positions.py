"""Position state, its append-only event history and its coldpath bookkeeping, in ONE
RocksDB-backed Faust table (`positions`), so one changelog partition holds all of a position's
writes in the order they were made (ADR 0010).

Keys (position keys are printable text, so NUL and SOH never occur in them):
- positionKey -> a snapshot of the position state (JSON bytes), lots and applied trade ids
  included, at some version S.
- positionKey + NUL + 8-byte big-endian version -> one history event (JSON). Appending writes one
  small record; the history is never rewritten. Reading it back for a replay is one point lookup
  per version.
- positionKey + SOH -> the backdated trade ids applied provisionally and not yet replayed.

The current state is the snapshot plus the trades of the history events after it, applied again
in version order (ADR 0011). A hotpath trade writes its history event and, only every
`SNAPSHOT_EVERY` versions, a snapshot: at 1,000 open lots a snapshot is 65 KiB, a history event
about 0.4 KiB. Every other change (a coldpath correction, a contract rule) writes a snapshot at
its version, so the history after the snapshot holds trades only and versions are dense there.

Write order, and why a crash (which keeps a prefix of one partition's records) is safe:
- Trade: pending (backdated only), history event, [snapshot]. The history event is the commit
  point (for a position's first trade, its snapshot): if it survived, so did the pending record,
  and the redelivered trade is a counted duplicate; if it was lost, the trade is applied again
  at the same version.
- Correction: CORRECTION event, snapshot, pending. A CORRECTION event after the snapshot is a
  correction whose snapshot was lost: loading stops before it, the copy is redelivered and still
  pending, so the replay runs again and overwrites it.
Separate tables would give no such guarantee: their changelogs are different topics, and the
Kafka client may deliver a later record of one before an earlier record of another.

A bounded in-memory cache of loaded positions saves the load per trade. It is valid for one
ownership epoch only (`app.ownership`): after any rebalance another worker may have changed the
positions, so the first read in a new epoch starts from an empty cache. A handler whose partition
was revoked gets `PartitionRevoked` on its first read, before it can load (and mutate) a position
into the cache.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator

import faust
import orjson

from app import ownership
from app.domain.lot_methods import LotMethodSchedule
from app.domain.positions import Position, apply_trade
from app.domain.replay import CORRECTION, HistoryEvent
from app.errors import CorruptState
from tables.common import bytes_table

_VERSION = struct.Struct(">Q")
CACHE_SIZE = 10_000
# Versions between snapshots. A load applies at most this many trades again (about 10-50 us
# each at 10-1,000 lots); a trade writes 1/SNAPSHOT_EVERY of a snapshot on average.
SNAPSHOT_EVERY = 64


def history_key(position_key: str, version: int) -> bytes:
    return position_key.encode() + b"\x00" + _VERSION.pack(version)


def pending_key(position_key: str) -> bytes:
    return position_key.encode() + b"\x01"


class PositionStore:
    """Load positions; write trades, corrections and rule changes in the order that keeps a
    crash safe."""

    def __init__(self, app: faust.App, partitions: int, default_lot_method: str) -> None:
        self.positions = bytes_table(
            app,
            "positions",
            partitions,
            "position snapshots, event history and pending backdated trades per positionKey",
        )
        self.app = app
        self.default_lot_method = default_lot_method
        self.snapshot_every = SNAPSHOT_EVERY
        self._cache: OrderedDict[str, Position] = OrderedDict()
        self._snapshot_version: dict[str, int] = {}
        self._cache_epoch = ownership.epoch(app)

    def _current_cache(self) -> OrderedDict[str, Position]:
        now = ownership.epoch(self.app)
        if now != self._cache_epoch:
            self._cache.clear()
            self._snapshot_version.clear()
            self._cache_epoch = now
        return self._cache

    # -- reading ----------------------------------------------------------------------------
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
        snapshot_version = position.version
        self._apply_history_after_snapshot(position)
        self._remember(position, snapshot_version)
        return position

    def _apply_history_after_snapshot(self, position: Position) -> None:
        key = position.position_key
        while True:
            raw = self.positions.get(history_key(key, position.version + 1))
            if raw is None:
                return
            event = HistoryEvent.from_dict(orjson.loads(raw))
            if event.type == CORRECTION:
                return  # its snapshot was lost: the correction runs again (module docstring)
            result = apply_trade(position, event.trade)
            if result.duplicate or result.version != event.version:
                raise CorruptState(
                    f"{key}: history event {event.version} ({event.trade.trade_id}) does not "
                    f"follow version {position.version}"
                )

    def get_or_create(self, position_key: str) -> Position:
        position = self.get(position_key)
        if position is None:
            account, _, symbol = position_key.partition(":")
            position = Position(account, symbol, LotMethodSchedule(self.default_lot_method))
        return position

    def cached(self) -> list[Position]:
        """Positions loaded on this worker in the current epoch (so all owned)."""
        return list(self._current_cache().values())

    def forget(self, position_key: str) -> None:
        self._cache.pop(position_key, None)
        self._snapshot_version.pop(position_key, None)

    def _remember(self, position: Position, snapshot_version: int) -> None:
        cache = self._current_cache()
        key = position.position_key
        cache[key] = position
        cache.move_to_end(key)
        self._snapshot_version[key] = snapshot_version
        if len(cache) > CACHE_SIZE:
            evicted, _ = cache.popitem(last=False)
            self._snapshot_version.pop(evicted, None)

    def pending_trades(self, position_key: str) -> list[str]:
        raw = self.positions.get(pending_key(position_key))
        return orjson.loads(raw) if raw else []

    def events(self, position_key: str, upto_version: int) -> Iterator[HistoryEvent]:
        """History events 1..upto_version in version order (missing versions are skipped:
        a contract rule changes the version without a history event)."""
        for version in range(1, upto_version + 1):
            raw = self.positions.get(history_key(position_key, version))
            if raw is not None:
                yield HistoryEvent.from_dict(orjson.loads(raw))

    # -- writing ----------------------------------------------------------------------------
    def record_trade(self, position: Position, event: HistoryEvent, *, pending: bool) -> None:
        """A trade applied to `position` (in place, at `event.version`): pending first, then
        the history event (the commit point), then a snapshot when one is due. A position's
        first trade always writes one, so a position without a snapshot does not exist (its
        default lot method is never read from the configuration again)."""
        key = position.position_key
        if pending:
            self._add_pending(key, event.trade.trade_id)
        self._append(key, event)
        last = self._snapshot_version.get(key)
        if last is None or position.version - last >= self.snapshot_every:
            self.save(position)  # a new position's first trade, or one due
        else:
            self._remember(position, last)

    def record_correction(
        self, position: Position, event: HistoryEvent, still_pending: list[str]
    ) -> None:
        """A coldpath rebuild at `event.version`: the CORRECTION event, the snapshot, then the
        trades still waiting (after the snapshot: a crash between them replays the trade once
        more, a correction with no change; the other order would leave the position
        PROVISIONAL with nothing pending to replay)."""
        self._append(position.position_key, event)
        self.save(position)
        self._set_pending(position.position_key, still_pending)

    def save(self, position: Position) -> None:
        """Write a snapshot of `position` at its version (a change that is not a trade)."""
        self.positions[position.position_key.encode()] = orjson.dumps(position.to_state())
        self._remember(position, position.version)

    def _append(self, position_key: str, event: HistoryEvent) -> None:
        self.positions[history_key(position_key, event.version)] = orjson.dumps(event.to_dict())

    def _add_pending(self, position_key: str, trade_id: str) -> None:
        pending = self.pending_trades(position_key)
        if trade_id not in pending:
            pending.append(trade_id)
            self.positions[pending_key(position_key)] = orjson.dumps(pending)

    def _set_pending(self, position_key: str, trade_ids: list[str]) -> None:
        if trade_ids != self.pending_trades(position_key):
            self.positions[pending_key(position_key)] = orjson.dumps(trade_ids)
