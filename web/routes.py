"""Where a row leaves over REST: health, metrics, metadata and object lookups.

Handlers are plain aiohttp handlers mounted on Faust's aiohttp application, so the web view
shares the worker's event loop and tables without Faust's view layer in the way.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from app import metrics
from app.domain.objects import OBJECT_TYPES, unpack_message
from app.errors import DecodeError
from app.rows import dumps, json_row


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status)


class RestApi:
    """The REST endpoints of one worker."""

    def __init__(self, app: Any, pipelines: dict[str, Any]) -> None:
        self.app = app
        self.pipelines = pipelines

    def install(self, web_server: Any) -> None:
        router = web_server.web_app.router
        router.add_get("/health", self.health)
        router.add_get("/health/liveness", self.liveness)
        router.add_get("/health/readiness", self.readiness)
        router.add_get("/health/detailed", self.health)
        router.add_get("/metrics", self.metrics)
        router.add_get("/v1/trade-blotter/metadata", self.metadata)
        router.add_get("/v1/objects/{type}/{id}", self.get_object)

    # -- health -------------------------------------------------------------------------
    def _components(self) -> dict[str, Any]:
        app = self.app
        crashed = [
            name for name, agent in app.agents.items() if getattr(agent, "_crashed", False)
        ]
        assignment = app.assignor.assigned_actives() if app.assignor else set()
        return {
            "worker": {"ready": app.ready, "uptime_s": round(time.monotonic() - app.started_at, 3)},
            "agents": {"count": len(app.agents), "crashed": crashed},
            "partitions": {"assigned": len(assignment)},
            "rebalancing": bool(getattr(app, "rebalancing", False)),
        }

    async def health(self, request: web.Request) -> web.Response:
        comps = self._components()
        healthy = self.app.ready and not comps["agents"]["crashed"]
        body = {"status": "UP" if healthy else "DOWN", "components": comps}
        return json_response(body, 200 if healthy else 503)

    async def liveness(self, request: web.Request) -> web.Response:
        comps = self._components()
        alive = not comps["agents"]["crashed"]
        return json_response({"status": "UP" if alive else "DOWN"}, 200 if alive else 503)

    async def readiness(self, request: web.Request) -> web.Response:
        ready = bool(self.app.ready)
        return json_response({"status": "UP" if ready else "DOWN"}, 200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = metrics.render_latest()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp

    # -- data ---------------------------------------------------------------------------
    async def metadata(self, request: web.Request) -> web.Response:
        from app.metadata import metadata_json

        return json_response(metadata_json())

    async def get_object(self, request: web.Request) -> web.Response:
        type_name = request.match_info["type"]
        object_id = request.match_info["id"]
        pipeline = self.pipelines.get(type_name)
        if pipeline is None:
            known = ", ".join(OBJECT_TYPES)
            return error_response(404, "UNKNOWN_TYPE", f"unknown object type; one of {known}")
        if not self.app.ready:
            return error_response(503, "NOT_READY", "worker is recovering its tables")
        stored = pipeline.table.get(object_id.encode())
        if stored is None:
            return error_response(404, "NOT_FOUND", f"no {type_name} with id {object_id}")
        try:
            row = pipeline.intake.serde.decode(unpack_message(stored), pipeline.object_type.record)
        except DecodeError as exc:  # stored bytes were accepted once; a schema went missing
            return error_response(500, "DECODE_FAILED", exc.message)
        return json_response(json_row(row))
