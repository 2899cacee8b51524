"""Producing Avro to the input topics, as the OMS would: used by the simulator, tools and tests.

Keys are placed with aiokafka's default partitioner (murmur2, like Java clients and Faust), so
records keyed by object id land on the partition that owns that id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from app.config import Settings, Topics
from app.serde import AvroSerde

CANONICAL_TOPICS = Topics()


class OmsProducer:
    """An aiokafka producer that encodes records with the project's serde."""

    def __init__(self, settings: Settings, serde: AvroSerde, **producer_kw: Any) -> None:
        self.settings = settings
        self.serde = serde
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            linger_ms=producer_kw.pop("linger_ms", 5),
            enable_idempotence=producer_kw.pop("enable_idempotence", True),
            **producer_kw,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> OmsProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def topic(self, topic_attr: str) -> str:
        return getattr(self.settings.topics, topic_attr)

    async def send(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Any:
        """Send raw bytes (already framed, or deliberately malformed for tests)."""
        return await self._producer.send(
            topic,
            value=value,
            key=key.encode() if isinstance(key, str) else key,
            headers=list(headers) if headers else None,
            partition=partition,
        )

    async def send_record(
        self, topic_attr: str, key: str, record: str, value: dict[str, Any], **kw: Any
    ) -> Any:
        topic = self.topic(topic_attr)
        # Subjects follow the canonical topic names, whatever TOPIC_PREFIX/TOPIC_* say, so one
        # manifest or registry serves every deployment.
        subject = f"{getattr(CANONICAL_TOPICS, topic_attr)}-value"
        data = self.serde.encode(value, record, subject)
        return await self.send(topic, key, data, **kw)

    async def flush(self) -> None:
        await self._producer.flush()
