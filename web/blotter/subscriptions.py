"""Subscriptions, their flow control, and the fan-out that feeds them. No sockets here.

A :class:`Subscription` is the server's model of one client view: the changes it still has to
receive (`pending`, conflated per key), the snapshot rows not sent yet, and how many rows it may
still receive (`credits`). Whatever the order of changes and credit grants, draining it leaves the
client holding exactly the latest matching version of every key: a key's pending entry is always
the newest version, an upsert of a key the client never saw is cancelled when the row stops
matching, and a remove is sent only for a key the client holds.

Which keys a client holds is not stored per subscription (that would cost memory proportional to
the view for every subscriber): for a key with no pending entry and no unsent snapshot row, the
client holds it exactly when it matched the filter before the current change, which the group's
`matching` set answers; a pending entry records whether the client held the key when it was
queued.

The :class:`FanOut` delivers each replica change to the subscriptions it may concern.
Subscriptions with equal filters (same object type, same normalized filter, same entitlements)
share one :class:`FilterGroup`: the predicate runs once per change for all of them. Groups are
indexed by one equality constraint of their filter (e.g. ``account in {...}``), so a change
reaches only the groups whose constraint admits the new or the previous version of the row; the
previous one matters because a row that moved out of a group's constraint must still reach the
group, to be removed from its members' views.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from app import metrics
from app.domain.filters import CompiledFilter
from web.blotter.protocol import changes_frame, encode_id, snapshot_end_frame, snapshot_frame
from web.blotter.replica import Replica, VersionedRow

log = logging.getLogger(__name__)

PARKED = "parked"  # waiting for the replica to catch up before its snapshot
SNAPSHOT = "snapshot"  # snapshot rows still to send
LIVE = "live"  # snapshotEnd sent; changes flow
OVERFLOWED = "overflowed"  # pending passed the bound; SLOW_CONSUMER is due
CLOSED = "closed"

_MISSING = object()
#: Fields preferred for indexing when two constraints are equally selective.
_INDEX_PREFERENCE = ("account", "symbol", "status", "desk", "trader")


class Subscription:
    """One subscription's view state, credits and pending changes."""

    __slots__ = (
        "_notify",
        "conflated",
        "credits",
        "group",
        "id_json",
        "max_credits",
        "max_pending",
        "object_type",
        "pending",
        "queued",
        "rows_sent",
        "snapshot",
        "snapshot_rows",
        "state",
        "sub_id",
    )

    def __init__(
        self,
        sub_id: str,
        object_type: str,
        credits: int,
        *,
        max_credits: int,
        max_pending: int,
        notify: Callable[[Subscription], None] = lambda sub: None,
    ) -> None:
        self.sub_id = sub_id
        self.id_json = encode_id(sub_id)
        self.object_type = object_type
        self.max_credits = max_credits
        self.credits = min(credits, max_credits)
        self.max_pending = max_pending
        self._notify = notify
        self.state = PARKED
        self.group: FilterGroup | None = None
        # key -> (is_upsert, version, client holds the key); insertion order = first change
        self.pending: OrderedDict[str, tuple[bool, VersionedRow, bool]] = OrderedDict()
        self.snapshot: OrderedDict[str, VersionedRow] | None = None
        self.snapshot_rows = 0
        self.rows_sent = 0
        self.conflated = 0
        self.queued = False  # in its connection's send queue (maintained by the session)

    def __repr__(self) -> str:
        return f"Subscription({self.sub_id!r}, {self.object_type}, {self.state})"

    # -- fed by the fan-out (synchronous, never awaits) ----------------------------------------
    def activate(self, group: FilterGroup | None, rows: Iterable[VersionedRow]) -> None:
        """Start the snapshot with `rows`, the matching versions at this very loop step."""
        self.group = group
        self.snapshot = OrderedDict((row.key, row) for row in rows)
        self.state = SNAPSHOT
        self._notify(self)

    def offer_upsert(self, version: VersionedRow, was_matching: bool) -> None:
        """`version` matches this subscription's filter; `was_matching` says whether the
        previous version did (so whether the client holds the key, absent pending news)."""
        state = self.state
        if state is not LIVE and state is not SNAPSHOT:
            return
        key = version.key
        snapshot = self.snapshot
        if snapshot is not None and key in snapshot:
            snapshot[key] = version  # not sent yet: the snapshot carries the newer version
            self.conflated += 1
            return
        pending = self.pending
        entry = pending.get(key)
        if entry is None:
            pending[key] = (True, version, was_matching)
            self._pending_grew(len(pending))
        else:  # conflated: the size is unchanged and the subscription already waits its turn
            pending[key] = (True, version, entry[2])
            self.conflated += 1

    def offer_remove(self, version: VersionedRow) -> None:
        """`version` no longer matches (or the object was deleted); the previous version did."""
        state = self.state
        if state is not LIVE and state is not SNAPSHOT:
            return
        key = version.key
        snapshot = self.snapshot
        if snapshot is not None and key in snapshot:
            del snapshot[key]  # the client never saw it
            self.conflated += 1
            return
        pending = self.pending
        entry = pending.get(key)
        if entry is None:
            pending[key] = (False, version, True)
            self._pending_grew(len(pending))
        elif entry[2]:
            pending[key] = (False, version, True)
            self.conflated += 1
        else:
            del pending[key]  # an upsert the client never received: nothing to undo
            self.conflated += 1

    def _pending_grew(self, size: int) -> None:
        # The bound is on the backlog the client has no credit for: a burst inside one batch
        # interval must not fail a subscription that can take it.
        if size - self.credits > self.max_pending:
            self.state = OVERFLOWED
            self._notify(self)
        elif not self.queued and self.credits > 0 and self.state is LIVE:
            self._notify(self)

    # -- driven by the connection ----------------------------------------------------------
    def grant(self, n: int) -> None:
        """Add `n` credits (capped at `max_credits`)."""
        self.credits = min(self.credits + n, self.max_credits)
        if self.sendable():
            self._notify(self)

    def sendable(self) -> bool:
        """Whether `drain` would produce a frame now."""
        state = self.state
        if state is SNAPSHOT:
            return self.credits > 0 or not self.snapshot
        if state is LIVE:
            return self.credits > 0 and bool(self.pending)
        return state is OVERFLOWED

    def drain(self, max_rows: int, max_frames: int) -> list[bytes]:
        """Frames to send now: snapshot rows, `snapshotEnd`, then changes, never more rows than
        the credits; at most `max_frames` frames (plus a `snapshotEnd`)."""
        frames: list[bytes] = []
        sent_before = self.rows_sent
        if self.state is SNAPSHOT:
            snapshot = self.snapshot
            assert snapshot is not None
            while snapshot and self.credits > 0 and len(frames) < max_frames:
                n = min(self.credits, max_rows, len(snapshot))
                entries: list[bytes] = []
                for _ in range(n):
                    entries.append(snapshot.popitem(last=False)[1].upsert_entry())
                self.credits -= n
                self.snapshot_rows += n
                self.rows_sent += n
                frames.append(snapshot_frame(self.id_json, entries))
            if snapshot:
                self._count(sent_before)
                return frames
            self.snapshot = None
            self.state = LIVE
            frames.append(snapshot_end_frame(self.id_json, self.snapshot_rows))
        if self.state is LIVE:
            pending = self.pending
            popitem = pending.popitem
            while pending and self.credits > 0 and len(frames) < max_frames:
                n = min(self.credits, max_rows, len(pending))
                entries = []
                append = entries.append
                for _ in range(n):
                    is_upsert, version, _ = popitem(False)[1]
                    append(version.upsert_entry() if is_upsert else version.remove_entry())
                self.credits -= n
                self.rows_sent += n
                frames.append(changes_frame(self.id_json, entries))
        self._count(sent_before)
        return frames

    def close(self) -> int:
        """Stop the subscription; return the number of pending rows discarded."""
        dropped = len(self.pending) + (len(self.snapshot) if self.snapshot else 0)
        self.pending.clear()
        self.snapshot = None
        self.state = CLOSED
        self._count(self.rows_sent)
        if dropped:
            metrics.WS_ROWS_DROPPED.inc(dropped)
        return dropped

    def _count(self, sent_before: int) -> None:
        if self.rows_sent > sent_before:
            metrics.WS_ROWS_SENT.inc(self.rows_sent - sent_before)
        if self.conflated:
            metrics.WS_ROWS_CONFLATED.inc(self.conflated)
            self.conflated = 0


class FilterGroup:
    """Subscriptions sharing one compiled filter, and the keys that currently match it.

    `matching` is maintained on every change the group sees, so a new member's snapshot is a
    walk of the matching keys, not a scan of the whole replica: a reconnect storm of a thousand
    clients with twenty distinct filters costs twenty scans.
    """

    __slots__ = ("filter", "index_field", "index_values", "matching", "members", "predicate")

    def __init__(
        self, compiled: CompiledFilter, index: tuple[str, frozenset[Any]] | None
    ) -> None:
        self.filter = compiled
        self.predicate = compiled.predicate
        self.index_field, self.index_values = index if index else (None, frozenset())
        self.members: dict[Subscription, None] = {}
        self.matching: dict[str, None] = {}

    def evaluate(self, row: Any) -> bool:
        try:
            return bool(self.predicate(row))
        except Exception:  # a compiler bug must not stop the feed for every subscriber
            log.exception("filter %r failed on a row; treated as not matching", self.filter)
            return False


class _TypeIndex:
    """Groups of one object type: unindexed ones, and the others by field and value."""

    __slots__ = ("by_field", "unindexed")

    def __init__(self) -> None:
        self.unindexed: dict[FilterGroup, None] = {}
        self.by_field: dict[str, dict[Any, dict[FilterGroup, None]]] = {}

    def add(self, group: FilterGroup) -> None:
        if group.index_field is None:
            self.unindexed[group] = None
            return
        by_value = self.by_field.setdefault(group.index_field, {})
        for value in group.index_values:
            by_value.setdefault(value, {})[group] = None

    def remove(self, group: FilterGroup) -> None:
        if group.index_field is None:
            self.unindexed.pop(group, None)
            return
        by_value = self.by_field.get(group.index_field, {})
        for value in group.index_values:
            groups = by_value.get(value)
            if groups is not None:
                groups.pop(group, None)
                if not groups:
                    del by_value[value]
        if not by_value:
            self.by_field.pop(group.index_field, None)

    def candidates(self, row: Any, previous: Any) -> Iterator[FilterGroup]:
        """Every group whose constraint admits `row` or `previous` (each at most once)."""
        yield from self.unindexed
        for field, by_value in self.by_field.items():
            value = row.get(field, _MISSING) if row is not None else _MISSING
            groups = by_value.get(value) if value is not _MISSING else None
            if groups:
                yield from groups
            if previous is None:
                continue
            old = previous.get(field, _MISSING)
            if old is _MISSING or old == value:
                continue
            old_groups = by_value.get(old)
            if old_groups:
                for group in old_groups:
                    if not groups or group not in groups:
                        yield group


def choose_index(compiled: CompiledFilter) -> tuple[str, frozenset[Any]] | None:
    """The most selective equality constraint: fewest values, then a preferred field."""
    constraints = compiled.equality_constraints()
    if not constraints:
        return None
    key_field = compiled.object_type.key_field
    preference = (key_field, *_INDEX_PREFERENCE)

    def rank(item: tuple[str, frozenset[Any]]) -> tuple[int, int, str]:
        field, values = item
        place = preference.index(field) if field in preference else len(preference)
        return (len(values), place, field)

    return min(constraints.items(), key=rank)


class FanOut:
    """Routes replica changes to subscriptions; takes snapshots atomically with registration."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._groups: dict[CompiledFilter, FilterGroup] = {}
        self._index: dict[str, _TypeIndex] = {}
        self._parked: dict[Subscription, CompiledFilter] = {}
        replica.set_listener(self.publish)
        replica.on_ready(self._activate_parked)

    @property
    def group_count(self) -> int:
        return len(self._groups)

    def add(self, sub: Subscription, compiled: CompiledFilter) -> None:
        """Register `sub` and give it its snapshot in the same (synchronous) step.

        No change can be applied between the snapshot read and the registration, because both
        happen without yielding to the event loop that applies changes: every version applied
        before is in the snapshot, every version applied after reaches the subscription. Before
        the replica is ready the subscription is parked and activated when it is.
        """
        if not self.replica.ready:
            self._parked[sub] = compiled
            return
        self._activate(sub, compiled)

    def remove(self, sub: Subscription) -> None:
        if self._parked.pop(sub, None) is not None:
            return
        group = sub.group
        if group is None:
            return
        group.members.pop(sub, None)
        sub.group = None
        if not group.members:
            self._groups.pop(group.filter, None)
            index = self._index.get(group.filter.object_type.name)
            if index is not None:
                index.remove(group)

    def _activate_parked(self) -> None:
        parked, self._parked = self._parked, {}
        for sub, compiled in parked.items():
            if sub.state is PARKED:
                self._activate(sub, compiled)

    def _activate(self, sub: Subscription, compiled: CompiledFilter) -> None:
        group = self._groups.get(compiled)
        object_type = compiled.object_type.name
        if group is None:
            group = FilterGroup(compiled, choose_index(compiled))
            group.matching = {
                version.key: None
                for version in self.replica.rows(object_type)
                if group.evaluate(version.row)
            }
            self._groups[compiled] = group
            self._index.setdefault(object_type, _TypeIndex()).add(group)
        group.members[sub] = None
        rows = self.replica.rows_by_key(object_type)
        sub.activate(group, (rows[key] for key in group.matching))

    def publish(self, previous: VersionedRow | None, current: VersionedRow) -> None:
        """Deliver one accepted version to every subscription it concerns (never awaits)."""
        index = self._index.get(current.object_type)
        if index is None:
            return
        key, row = current.key, current.row
        for group in index.candidates(row, previous.row if previous is not None else None):
            if row is not None and group.evaluate(row):
                matching = group.matching
                was_matching = key in matching
                matching[key] = None
                for sub in group.members:
                    sub.offer_upsert(current, was_matching)
            elif group.matching.pop(key, _MISSING) is not _MISSING:
                for sub in group.members:
                    sub.offer_remove(current)
