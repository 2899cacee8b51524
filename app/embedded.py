"""Client-side compensation for the embedded broker's one protocol quirk. Embedded mode only.

noida-db answers every Fetch at once, ignoring `max_wait_ms`/`min_bytes`, so an idle aiokafka
consumer re-fetches in a tight loop (~500 fetches/s per connection, ~85-93% of a core while idle;
a Faust table agent ran at half speed because of it). Here an empty fetch answered early is
followed by a short sleep, which is what a real broker's long poll would have done. Measured:
idle consumer CPU 93% -> 10%, agent throughput 672 -> 1,226 msg/s, latency p50 5 ms / p99 17 ms.

This patches aiokafka internals, so it is installed only when the app runs against the embedded
broker (BROKER_URL unset); against a real Kafka cluster nothing here is active.

The sleep adapts: 10 ms after the first empty fetch, doubling with every further empty one up
to 40 ms, back to 10 ms as soon as a fetch brings records. A worker has several consumers (the
agents', the blotter's change feed, the price follower), each fetching every idle partition in
pure Python, so a fixed 10 ms sleep cost a busy ingest worker ~30% of its CPU (50 ms measured:
-30% CPU per event, docs/benchmarks.md). The 40 ms ceiling bounds the extra wait of the first
record after a quiet spell; under steady flow fetches keep finding records and stay at 10 ms.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

_INSTALLED = False
IDLE_FETCH_BACKOFF_S = 0.01
IDLE_FETCH_BACKOFF_MAX_S = 0.04


def idle_fetch_delay(empty_streak: int, base_s: float, max_s: float) -> float:
    """The sleep after the `empty_streak`-th consecutive empty fetch (1 = the first)."""
    return min(base_s * 2 ** min(max(empty_streak - 1, 0), 16), max_s)


def install_idle_fetch_backoff(
    delay_s: float = IDLE_FETCH_BACKOFF_S, max_delay_s: float = IDLE_FETCH_BACKOFF_MAX_S
) -> bool:
    """Install the patch once per process; return True when it was installed by this call."""
    global _INSTALLED
    if _INSTALLED:
        return False
    from aiokafka.consumer import fetcher

    original = fetcher.Fetcher._proc_fetch_request

    async def _proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
        records_before = len(self._records)
        started = time.monotonic()
        result = await original(self, assignment, node_id, request)
        if len(self._records) != records_before:
            self._blotter_empty_streak = 0
        else:
            # Nothing arrived: emulate the long poll the broker skipped, bounded by max wait.
            streak = getattr(self, "_blotter_empty_streak", 0) + 1
            self._blotter_empty_streak = streak
            delay = idle_fetch_delay(streak, delay_s, max_delay_s)
            remaining = min(delay, self._fetch_max_wait_ms / 1000) - (time.monotonic() - started)
            if remaining > 0:
                try:
                    await asyncio.sleep(remaining)
                except asyncio.CancelledError:
                    # aiokafka's close() cancels and awaits pending fetches, expecting them
                    # to swallow cancellation (as the original does around its send).
                    return False
        return result

    fetcher.Fetcher._proc_fetch_request = _proc_fetch_request
    _INSTALLED = True
    return True


def is_installed() -> bool:
    return _INSTALLED
