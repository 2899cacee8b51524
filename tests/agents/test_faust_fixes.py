"""Faust's producer buffer flush must not return while records are still buffered: offsets are
committed right after it (app.faust_fixes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from faust.transport.producer import ProducerBuffer

from app import faust_fixes

pytestmark = pytest.mark.timeout(30)


class SlowChannel:
    """A channel whose hand-over to the client takes longer than Faust's 0.1 s flush wait."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.published: list[int] = []

    async def publish_message(self, fut: SimpleNamespace, wait: bool = False) -> None:
        await asyncio.sleep(self.delay_s)
        self.published.append(fut.message.n)


@pytest.fixture
async def buffer() -> AsyncIterator[ProducerBuffer]:
    """A running producer buffer with the corrections installed."""
    faust_fixes.install()
    running = ProducerBuffer()
    running.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_flush_waits_for_every_buffered_record_even_when_sends_are_slow(
    buffer: ProducerBuffer,
) -> None:
    channel = SlowChannel(0.25)
    for n in range(4):
        buffer.put(SimpleNamespace(message=SimpleNamespace(channel=channel, n=n)))
    await buffer.flush()
    # Faust's own flush returned after ~0.1 s with all four still buffered.
    assert channel.published == [0, 1, 2, 3]
    assert buffer.size == 0


async def test_flush_of_an_empty_buffer_returns_at_once(buffer: ProducerBuffer) -> None:
    await asyncio.wait_for(buffer.flush(), timeout=0.05)
