"""Dead-letter queues: `<topic>-dlq`, original key/value/headers plus headers naming the error.

A poison message is never acked-and-lost: it is copied here with enough context (stage, error
class, message, origin topic/partition/offset/timestamp, app version) for an operator to fix the
cause and re-submit it with `replay-dlq`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.errors import PoisonMessage

APP_VERSION = "0.1.0"

H_STAGE = "dlq.stage"
H_ERROR_CLASS = "dlq.error.class"
H_ERROR_MESSAGE = "dlq.error.message"
H_TOPIC = "dlq.original.topic"
H_PARTITION = "dlq.original.partition"
H_OFFSET = "dlq.original.offset"
H_TIMESTAMP = "dlq.original.timestamp"
H_APP_VERSION = "dlq.app.version"
DLQ_HEADERS = (
    H_STAGE,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_TOPIC,
    H_PARTITION,
    H_OFFSET,
    H_TIMESTAMP,
    H_APP_VERSION,
)
MAX_ERROR_MESSAGE = 500


def dlq_headers(
    original_headers: Sequence[tuple[str, bytes]] | None,
    error: PoisonMessage,
    topic: str,
    partition: int,
    offset: int,
    timestamp: float | None,
) -> list[tuple[str, bytes]]:
    """Original headers (minus earlier DLQ headers, on re-failure) + the error's headers."""
    kept = [(k, v) for k, v in (original_headers or ()) if k not in DLQ_HEADERS]
    ts_ms = "" if timestamp is None else str(int(timestamp * 1000))
    return [
        *kept,
        (H_STAGE, error.stage.encode()),
        (H_ERROR_CLASS, type(error).__name__.encode()),
        (H_ERROR_MESSAGE, error.message[:MAX_ERROR_MESSAGE].encode("utf-8", "replace")),
        (H_TOPIC, topic.encode()),
        (H_PARTITION, str(partition).encode()),
        (H_OFFSET, str(offset).encode()),
        (H_TIMESTAMP, ts_ms.encode()),
        (H_APP_VERSION, APP_VERSION.encode()),
    ]


def header_dict(headers: Sequence[tuple[str, bytes]] | Any) -> dict[str, str]:
    """Headers as a str dict (last value wins), for tests and tools."""
    items = headers.items() if hasattr(headers, "items") else headers or ()
    return {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for k, v in items}
