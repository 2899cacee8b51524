"""The worker's in-memory replica of the latest version of every blotter object.

Every worker holds all rows of all partitions (fed by :mod:`web.blotter.feed`), so a client sees
the whole book whichever worker it connected to, and a snapshot is a read of local memory, not a
scatter-gather over workers. The replica applies the same version rule as the tables: a version
replaces the held one only when its sequence is strictly higher, so the at-least-once,
possibly reordered change feed converges to exactly the tables' content.

Each accepted version is handed to one listener (the fan-out) synchronously, in the same loop
step as the write: that is what makes a subscription's snapshot and its changes gapless.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from app.rows import dumps, json_row
from web.blotter.protocol import OP_REMOVE, OP_UPSERT, REASON_DELETED, REASON_NO_LONGER_MATCHES

log = logging.getLogger(__name__)


class VersionedRow:
    """One version of one object. Immutable once published; its wire entries are built lazily
    and cached, so every subscription that receives it shares one serialization."""

    __slots__ = ("_remove", "_upsert", "key", "object_type", "row", "sequence")

    def __init__(
        self, object_type: str, key: str, sequence: int, row: Mapping[str, Any] | None
    ) -> None:
        self.object_type = object_type
        self.key = key
        self.sequence = sequence
        self.row = row  # None for a deletion (a tombstone on the change feed)
        self._upsert: bytes | None = None
        self._remove: bytes | None = None

    @property
    def deleted(self) -> bool:
        return self.row is None

    def upsert_entry(self) -> bytes:
        """`{"op":"upsert","key":...,"sequence":...,"row":{...}}` (decimals as strings)."""
        entry = self._upsert
        if entry is None:
            assert self.row is not None, "a deleted row has no upsert entry"
            entry = dumps(
                {"op": OP_UPSERT, "key": self.key, "sequence": self.sequence,
                 "row": json_row(self.row)}
            )
            self._upsert = entry
        return entry

    def remove_entry(self) -> bytes:
        """`{"op":"remove","key":...,"sequence":...,"reason":...}`: the row left the view."""
        entry = self._remove
        if entry is None:
            reason = REASON_DELETED if self.row is None else REASON_NO_LONGER_MATCHES
            entry = dumps(
                {"op": OP_REMOVE, "key": self.key, "sequence": self.sequence, "reason": reason}
            )
            self._remove = entry
        return entry

    def json(self) -> dict[str, Any]:
        """The row as REST returns it."""
        return json_row(self.row or {})

    def __repr__(self) -> str:
        state = "deleted" if self.row is None else "row"
        return f"VersionedRow({self.object_type}:{self.key}@{self.sequence} {state})"


#: Called with (previous version or None, new version) for every accepted version.
ChangeListener = Callable[[VersionedRow | None, VersionedRow], None]


class Replica:
    """Latest version per (object type, id), in memory, with a readiness flag.

    `ready` turns true once the feed has read the change topic up to the end offsets it saw at
    start-up; before that a snapshot would show an old book, so the stream holds snapshots.
    """

    def __init__(self, object_types: tuple[str, ...]) -> None:
        self._rows: dict[str, dict[str, VersionedRow]] = {t: {} for t in object_types}
        self._listener: ChangeListener | None = None
        self._on_ready: list[Callable[[], None]] = []
        self.ready = False
        self.stale = 0  # versions ignored by the version rule (redeliveries, reorders)

    @property
    def object_types(self) -> tuple[str, ...]:
        return tuple(self._rows)

    def set_listener(self, listener: ChangeListener) -> None:
        self._listener = listener

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the replica becomes ready (at once if it already is)."""
        if self.ready:
            callback()
        else:
            self._on_ready.append(callback)

    def mark_ready(self) -> None:
        if self.ready:
            return
        self.ready = True
        callbacks, self._on_ready = self._on_ready, []
        for callback in callbacks:
            callback()

    # -- writes ---------------------------------------------------------------------------
    def is_newer(self, object_type: str, key: str, sequence: int) -> bool:
        """Whether a version at `sequence` would be accepted (lets the feed skip decoding)."""
        rows = self._rows.get(object_type)
        if rows is None:
            return False
        held = rows.get(key)
        return held is None or sequence > held.sequence

    def apply(
        self, object_type: str, key: str, sequence: int, row: Mapping[str, Any]
    ) -> VersionedRow | None:
        """Store the version if its sequence is higher than the held one; return it, or None
        when it was stale or a duplicate (or the type is not a blotter type)."""
        rows = self._rows.get(object_type)
        if rows is None:
            return None
        previous = rows.get(key)
        if previous is not None and sequence <= previous.sequence:
            self.stale += 1
            return None
        current = VersionedRow(object_type, key, sequence, row)
        rows[key] = current
        if self._listener is not None:
            self._listener(previous, current)
        return current

    def delete(
        self, object_type: str, key: str, sequence: int | None = None
    ) -> VersionedRow | None:
        """Drop the object (a tombstone on the compacted feed); subscribers see a remove."""
        rows = self._rows.get(object_type)
        if rows is None:
            return None
        previous = rows.pop(key, None)
        if previous is None:
            return None
        tombstone = VersionedRow(
            object_type, key, previous.sequence if sequence is None else sequence, None
        )
        if self._listener is not None:
            self._listener(previous, tombstone)
        return tombstone

    # -- reads ----------------------------------------------------------------------------
    def get(self, object_type: str, key: str) -> VersionedRow | None:
        """The latest version of one object, or None."""
        rows = self._rows.get(object_type)
        return None if rows is None else rows.get(key)

    def rows(self, object_type: str) -> Iterator[VersionedRow]:
        """Every held version of a type, in first-seen order. Do not hold across awaits."""
        return iter(self._rows.get(object_type, {}).values())

    def rows_by_key(self, object_type: str) -> Mapping[str, VersionedRow]:
        """Read-only view of a type's rows by key. Do not hold across awaits."""
        return self._rows.get(object_type, {})

    def count(self, object_type: str | None = None) -> int:
        if object_type is None:
            return sum(len(rows) for rows in self._rows.values())
        return len(self._rows.get(object_type, {}))

    def page(
        self, object_type: str, limit: int = 100, after: str | None = None
    ) -> list[VersionedRow]:
        """Up to `limit` rows of a type in key order, starting after key `after` (keyset
        pagination: stable while rows change, unlike offsets)."""
        rows = self._rows.get(object_type)
        if not rows or limit <= 0:
            return []
        keys = rows.keys() if after is None else (k for k in rows if k > after)
        return [rows[k] for k in heapq.nsmallest(limit, keys)]
