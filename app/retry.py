"""Waiting out a dependency outage: the one backoff loop for every `TransientError`.

A schema-registry or broker outage is not the message's fault, so it must never dead-letter
it; the caller retries the whole operation with capped exponential backoff until it succeeds
(or the task is cancelled, e.g. at shutdown, which leaves the message unacknowledged). A
handler whose partition was revoked meanwhile stops waiting: the new owner has the message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app import metrics, ownership
from app.errors import TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 5.0


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    topic: str,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> T:
    """Run `operation` until it does not raise `TransientError`; other errors propagate."""
    delay = first_delay_s
    while True:
        try:
            return await operation()
        except TransientError as exc:
            metrics.TRANSIENT_ERRORS.labels(topic=topic).inc()
            log.warning("transient error on %s, retrying in %.1f s: %s", topic, delay, exc)
            await asyncio.sleep(delay)
            ownership.ensure_owned()
            delay = min(delay * 2, max_delay_s)
