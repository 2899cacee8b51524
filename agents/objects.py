"""Latest-version agents for orders, executions, quote requests and quotes.

Per message: intake (decode, validate, re-key), then the version rule against the table, then
the change feed. The table write and the change are made in the same event, so a crash after the
write re-applies nothing (the sequence check makes the redelivery a counted duplicate), and the
change feed is at-least-once with a sequence that lets consumers drop what they already have.

The agents take their input in batches (`agents.delivery.process_in_batches`, ADR 0008): each
change is queued behind its table's changelog record in Faust's producer buffer, in order, and
the buffer is handed to the Kafka client once per batch, before the batch is acknowledged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import EventT

from agents.delivery import hand_over_producer_buffer, process_in_batches
from agents.intake import Intake, raw_topic
from app import metrics
from app.config import Batching
from app.domain.objects import (
    OBJECT_TYPES,
    ObjectType,
    next_version,
    unpack_sequence,
    validate_object,
)
from app.output_batches import OutputBatches
from app.serde import AvroSerde
from tables.objects import latest_version_table

H_OBJECT_TYPE = "object.type"
H_SEQUENCE = "object.sequence"


@dataclass
class ObjectPipeline:
    object_type: ObjectType
    intake: Intake
    table: faust.Table


def change_key(object_type: str, object_id: str) -> bytes:
    return f"{object_type}:{object_id}".encode()


def register_object_agents(
    app: faust.App,
    serde: AvroSerde,
    partitions: int,
    changes_topic: str,
    batching: Batching,
) -> dict[str, ObjectPipeline]:
    """Create the table and agent of every OMS object type; return them by type name."""
    changes = raw_topic(app, changes_topic)
    pipelines: dict[str, ObjectPipeline] = {}
    for object_type in OBJECT_TYPES.values():
        topic = getattr(app.settings.topics, object_type.topic_attr)
        intake = Intake(
            app,
            serde,
            topic,
            object_type.record,
            partitions,
            validate=lambda row, ot=object_type: validate_object(ot, row),
            key_of=lambda row, ot=object_type: row[ot.key_field],
        )
        table = latest_version_table(app, object_type, partitions)
        pipeline = ObjectPipeline(object_type, intake, table)
        pipelines[object_type.name] = pipeline
        _register_agent(app, pipeline, changes, batching)
    return pipelines


def _register_agent(
    app: faust.App, pipeline: ObjectPipeline, changes: faust.TopicT, batching: Batching
) -> None:
    object_type, intake, table = pipeline.object_type, pipeline.intake, pipeline.table
    agent_name = f"latest-{object_type.name.lower()}"
    type_header = object_type.name.encode()
    latency = metrics.PROCESSING_SECONDS.labels(agent=agent_name)
    applied, stale = intake.counted_applied, intake.counted_stale

    change_records = OutputBatches(app, changes.get_topic_name())

    def add_change(event: EventT, row: dict[str, Any], sequence: int) -> None:
        change_records.add(
            change_key(object_type.name, row[object_type.key_field]),
            event.message.value,
            [(H_OBJECT_TYPE, type_header), (H_SEQUENCE, str(sequence).encode())],
        )

    async def handle(event: EventT) -> None:
        started = time.perf_counter()
        accepted = await intake.accept(event)
        if accepted is not None:
            key, row = accepted
            sequence = row["sequence"]
            stored = table.get(key)
            updated = next_version(stored, sequence, event.message.value)
            if updated is None:
                stale.inc()
                if stored is not None and unpack_sequence(stored) == sequence:
                    # This very version again: a redelivery after a crash that kept its table
                    # write but maybe not its change record (sent when the batch ended, ADR
                    # 0013). Sending it again is harmless: readers keep the newest sequence.
                    add_change(event, row, sequence)
            else:
                table[key] = updated
                intake.serde.remember(event.message.value, intake.record, row)
                add_change(event, row, sequence)
                applied.inc()
        latency.observe(time.perf_counter() - started)

    async def process(stream: faust.StreamT) -> None:
        await process_in_batches(
            stream,
            agent_name,
            handle,
            intake.dead_letter,
            max_events=batching.max_events,
            within_s=batching.within_s,
            after_batch=after_batch,
        )

    async def after_batch() -> None:
        # The changelog records of the batch's writes first, then its changes (ADR 0013).
        await hand_over_producer_buffer(app)
        await change_records.send()

    app.agent(intake.source, name=agent_name)(process)
