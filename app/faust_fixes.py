"""Corrections to faust-streaming internals that the delivery guarantees depend on.

`ProducerBuffer.flush()` (faust 0.15.3) gives up after waiting 0.1 s for one buffered message to
be handed to the client, and returns with records still buffered. Faust calls it right before
committing offsets, so a table's changelog records could still be in the buffer when the offsets
of the events that wrote them were committed. After a kill -9 the local stores are rebuilt from
the changelog, the committed inputs are not redelivered, and their effect is gone (found by the
reliability harness: objects left at an older sequence, trades missing from positions). Here
`flush()` waits until the buffer is empty *and* the message being handed over is in the client's
accumulator, which the client's own flush (called next by Faust) then sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

_INSTALLED = False


def install() -> bool:
    """Install the corrections once per process; True when this call installed them."""
    global _INSTALLED
    if _INSTALLED:
        return False
    from faust.transport.producer import ProducerBuffer

    original_send = ProducerBuffer._send_pending

    async def _send_pending(self: Any, fut: Any) -> None:
        self._blotter_in_flight = getattr(self, "_blotter_in_flight", 0) + 1
        try:
            await original_send(self, fut)
        finally:
            self._blotter_in_flight -= 1

    async def flush(self: Any) -> None:
        while self.size or getattr(self, "_blotter_in_flight", 0):
            if self.state != "running":
                raise RuntimeError("Cannot flush: producer buffer not running")
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except TimeoutError:
                continue  # still sending: keep waiting, never return with records buffered

    ProducerBuffer._send_pending = _send_pending
    ProducerBuffer.flush = flush
    _INSTALLED = True
    return True
