"""Where an event enters: decode, validate, dead-letter, re-key. Shared by every input agent.

Every input message ends as exactly one of: applied, ignored as stale/duplicate, dead-lettered
(or forwarded once for re-keying, after which it ends as one of those three). The counters
below make that accounting visible per topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import faust
from faust.types import EventT

from agents.routing import owner_partition
from app import metrics
from app.dlq import dlq_headers
from app.errors import PoisonMessage
from app.logs import bind_context
from app.retry import retry_transient
from app.serde import AvroSerde

log = logging.getLogger(__name__)

H_REKEYED_FROM = "rekeyed.from"


def raw_topic(app: faust.App, *names: str, partitions: int | None = None, **kw: Any) -> Any:
    """A topic of raw bytes: agents decode themselves so poison can be dead-lettered."""
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        **kw,
    )


class Intake:
    """Decode-validate-route for one input topic (and its internal re-key topic)."""

    def __init__(
        self,
        app: faust.App,
        serde: AvroSerde,
        topic: str,
        record: str,
        partitions: int,
        validate: Callable[[Mapping[str, Any]], None],
        key_of: Callable[[Mapping[str, Any]], str],
    ) -> None:
        self.app = app
        self.serde = serde
        self.topic = topic
        self.record = record
        self.partitions = partitions
        self.validate = validate
        self.key_of = key_of
        self.rekey_topic_name = f"{app.conf.id}-{topic}-rekey"
        app.internal_topics.append(self.rekey_topic_name)
        self.dlq_topic = raw_topic(app, f"{topic}-dlq")
        self.rekey_topic = raw_topic(
            app, self.rekey_topic_name, partitions=partitions, internal=True
        )
        self.source = raw_topic(app, topic, self.rekey_topic_name)
        # This topic's counters, bound once: `labels()` per event costs more than the increment.
        self.counted_in = metrics.EVENTS_IN.labels(topic=topic)
        self.counted_applied = metrics.EVENTS_APPLIED.labels(topic=topic)
        self.counted_stale = metrics.EVENTS_STALE.labels(topic=topic)

    async def accept(self, event: EventT) -> tuple[bytes, dict[str, Any]] | None:
        """The (key, decoded row) to apply, or None when the message was dead-lettered or
        forwarded for re-keying. Retries (never dead-letters) while a dependency is down."""
        message = event.message
        origin = self.topic  # count the re-keyed copy under its original topic
        if message.topic == self.topic:
            self.counted_in.inc()
        try:
            row = await retry_transient(
                lambda: self.serde.decode_async(message.value, self.record), self.topic
            )
            # Correlation ids on every log line of this event (the task's context, reset by
            # agents.delivery when the event is done).
            bind_context(correlationId=row.get("correlationId"), causationId=row.get("causationId"))
            self.validate(row)
            key = self.key_of(row).encode()
        except PoisonMessage as exc:
            await self.dead_letter(event, exc)
            return None
        if message.key != key or message.partition != owner_partition(key, self.partitions):
            if message.topic == self.rekey_topic_name:
                # Cannot happen with a murmur2 producer; never loop.
                log.error("re-keyed record landed off its owner partition: %s", key)
            else:
                await self.rekey_topic.send(
                    key=key,
                    value=message.value,
                    headers=[*(message.headers or []), (H_REKEYED_FROM, self.topic.encode())],
                )
                metrics.EVENTS_REKEYED.labels(topic=origin).inc()
                return None
        return key, row

    async def dead_letter(self, event: EventT, error: PoisonMessage) -> None:
        message = event.message
        headers = dlq_headers(
            list(message.headers or []),
            error,
            message.topic,
            message.partition,
            message.offset,
            message.timestamp,
        )
        await self.dlq_topic.send(key=message.key, value=message.value, headers=headers)
        metrics.EVENTS_DEAD_LETTERED.labels(topic=self.topic, stage=error.stage).inc()
        log.warning(
            "dead-lettered %s[%s]@%s at %s: %s",
            message.topic,
            message.partition,
            message.offset,
            error.stage,
            error.message,
        )
