"""A registry outage cannot fail a trade after its commit point: the position agent resolves
its output schemas before it touches any state (found by the reliability harness: a trade was
applied, then dead-lettered because encoding its TradeApplied asked a registry that was down)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust

from agents.positions import OUTPUT_SUBJECTS, PositionEngine
from app.config import load_settings
from app.pricebook import PriceBook
from app.serde import AvroSerde, RegistryResolver
from tests.conftest import await_condition


class RecordingIntake:
    topic = "trade-events"

    def __init__(self) -> None:
        self.accepted = 0

    async def accept(self, event):
        self.accepted += 1
        return None  # as if stale: the handler ends here


class CountingRoutes(dict):
    """http_stub routes that count lookups of the subjects' latest versions."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def get(self, path, default=None):
        if path.startswith("/subjects/"):
            self.lookups += 1
        return super().get(path, default)


def subject_route(subject: str, schema_id: int) -> tuple[str, tuple[int, dict]]:
    body = {"subject": subject, "version": 1, "id": schema_id, "schema": '"string"'}
    return f"/subjects/{subject}/versions/latest", (200, body)


async def test_no_state_is_touched_until_every_output_subject_resolves(http_stub) -> None:
    routes = CountingRoutes()
    for subject in OUTPUT_SUBJECTS:
        routes[f"/subjects/{subject}/versions/latest"] = (503, {"error_code": 50301})
    serde = AvroSerde(RegistryResolver(http_stub(routes), timeout_s=2))
    app = faust.App("test-position-outputs", broker="memory://", store="memory://")
    store = SimpleNamespace()  # any use of the store would raise AttributeError
    settings = load_settings({"AUTH_MODE": "disabled"})
    engine = PositionEngine(app, settings, serde, store, PriceBook())
    intake = RecordingIntake()

    handling = asyncio.create_task(engine.on_trade(SimpleNamespace(), intake))
    await await_condition(lambda: routes.lookups >= 3, 10, "three failed subject lookups")
    assert intake.accepted == 0 and not handling.done()

    for index, subject in enumerate(OUTPUT_SUBJECTS):
        path, answer = subject_route(subject, 900 + index)
        routes[path] = answer
    await asyncio.wait_for(handling, 10)
    assert intake.accepted == 1

    lookups = routes.lookups
    await engine.on_trade(SimpleNamespace(), intake)
    assert routes.lookups == lookups, "resolved once per process, not per event"
