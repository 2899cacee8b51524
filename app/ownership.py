"""Only the worker that owns a partition writes its state.

Revocation does not wait for handlers in flight (`stream_wait_empty=False`: a handler waiting
out a registry outage must not hold a rebalance past the session timeout). Such a handler goes
on after its partition moved to another worker. Unfenced, it then writes the table anyway: its
changelog record lands among the new owner's and may replace a newer value, and its
acknowledgement advances this worker's persisted changelog offset for a partition it no longer
has, so when the partition comes back, recovery starts past records the new owner wrote and
they are missing here (found by the reliability harness: 31-44 executions and a position lost
after a registry outage followed by two scale-downs).

A rebalance is seen at once: Faust bumps `app.rebalancing_count` synchronously the moment
revocation starts, and sets `app.consumer_generation_id` the moment the new assignment arrives.
A handler claims its event's partition when it starts (the partition is assigned and no
rebalance is in progress) and every table write checks that neither has changed since.
A handler that fails the check gets `PartitionRevoked` before anything is written; its message
stays unacknowledged and the partition's owner processes it.

A handler that would start while a rebalance is in progress waits for its end instead
(`settled`): the event may well belong to a partition that stays here, and one left
unacknowledged on a partition this worker keeps holds back its commits until the next rebalance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any, Protocol

from app.errors import PartitionRevoked

Epoch = tuple[int, int]


class RebalanceState(Protocol):
    """The part of a Faust app the fence reads."""

    rebalancing: bool
    rebalancing_count: int
    consumer_generation_id: int
    consumer: Any


_claim: ContextVar[tuple[RebalanceState, Epoch] | None] = ContextVar("ownership", default=None)


def epoch(app: RebalanceState) -> Epoch:
    return (app.rebalancing_count, app.consumer_generation_id)


def owned_partitions(app: RebalanceState) -> frozenset[Any]:
    """The partitions assigned to this worker, looked up once per epoch (not per event)."""
    now = epoch(app)
    cached = getattr(app, "_blotter_owned_partitions", None)
    if cached is None or cached[0] != now:
        cached = (now, frozenset(app.consumer.assignment()))
        app._blotter_owned_partitions = cached  # type: ignore[attr-defined]
    return cached[1]


def owns(app: RebalanceState, tp: Any) -> bool:
    """True when `tp` is assigned to this worker and no rebalance is in progress."""
    return not app.rebalancing and tp in owned_partitions(app)


def _rebalance_ended(app: RebalanceState) -> asyncio.Event:
    event = getattr(app, "_blotter_rebalance_ended", None)
    if event is None:
        event = app._blotter_rebalance_ended = asyncio.Event()  # type: ignore[attr-defined]
    return event


def on_rebalance_end(app: RebalanceState) -> None:
    """Wake the handlers waiting in `settled` (called by the app when Faust ends a rebalance)."""
    _rebalance_ended(app).set()


async def settled(app: RebalanceState, recheck_s: float = 1.0) -> None:
    """Return once no rebalance is in progress (at once when none is). Woken by
    `on_rebalance_end`; the flag is looked at again every `recheck_s` regardless, so a wake-up
    that never comes delays a handler, never stalls it."""
    while app.rebalancing:
        ended = _rebalance_ended(app)
        ended.clear()
        with suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), recheck_s)


@contextmanager
def claimed(app: RebalanceState, tp: Any) -> Iterator[None]:
    """Run the block under a claim on `tp`; PartitionRevoked at once if this worker does not
    own it now."""
    if not owns(app, tp):
        raise PartitionRevoked(f"{tp} is not this worker's now (reassigned or rebalancing)")
    token = _claim.set((app, epoch(app)))
    try:
        yield
    finally:
        _claim.reset(token)


def ensure_owned() -> None:
    """Raise PartitionRevoked when a rebalance started since this context's claim. Code not
    running under a claim (start-up, tests, REST reads) is not fenced."""
    claimed = _claim.get()
    if claimed is None:
        return
    app, at = claimed
    if at != epoch(app):
        raise PartitionRevoked(
            f"a rebalance started while the handler ran (epoch {at} -> {epoch(app)})"
        )
