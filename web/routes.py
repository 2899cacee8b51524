"""Where a row leaves over REST: health, metrics, metadata and object lookups.

Handlers are plain aiohttp handlers mounted on Faust's aiohttp application, so the web view
shares the worker's event loop and tables without Faust's view layer in the way.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app import metrics
from app.domain.objects import OBJECT_TYPES, unpack_message
from app.errors import DecodeError
from app.rows import dumps, iso_millis, json_row
from web.auth import principal_of, row_entitled
from web.openapi import OPENAPI_PATH, openapi_handler


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status)


ROUTED_HEADER = "X-Blotter-Routed"


class RestApi:
    """The REST endpoints of one worker.

    Reads of keyed state are answered by the worker that owns the key's partition: another
    worker forwards the request once (Faust's assignor knows every owner's URL) and relays the
    answer, so any worker can be asked.
    """

    def __init__(
        self, app: Any, monitor: Any, pipelines: dict[str, Any], positions: Any = None
    ) -> None:
        self.app = app
        self.monitor = monitor
        self.pipelines = pipelines
        self.positions = positions
        self.replica: Any = None  # the blotter's replica of every partition (set by main)
        self._session: Any = None

    def install(self, web_server: Any) -> None:
        router = web_server.web_app.router
        router.add_get("/health", self.health)
        router.add_get("/health/liveness", self.liveness)
        router.add_get("/health/readiness", self.readiness)
        router.add_get("/health/detailed", self.health)
        router.add_get("/metrics", self.metrics)
        router.add_get("/v1/trade-blotter/metadata", self.metadata)
        router.add_get("/v1/objects/{type}", self.list_objects)
        router.add_get("/v1/objects/{type}/{id}", self.get_object)
        router.add_get("/v1/positions", self.list_positions)
        router.add_get("/v1/positions/{positionKey}", self.get_position)
        router.add_get("/v1/positions/{positionKey}/events", self.get_position_events)
        router.add_get(OPENAPI_PATH, openapi_handler)
        web_server.web_app.on_cleanup.append(self._close_session)

    async def _close_session(self, _: Any) -> None:
        if self._session is not None:
            await self._session.close()

    async def _forward_to_owner(
        self, request: web.Request, table_name: str, key: bytes
    ) -> web.Response | None:
        """The owner's answer, or None when this worker owns the key (or was forwarded to)."""
        if request.headers.get(ROUTED_HEADER):
            return None
        try:
            owner = str(self.app.router.key_store(table_name, key)).rstrip("/")
        except (KeyError, IndexError):
            return error_response(503, "NOT_READY", "the key's partition is not assigned yet")
        if owner == str(self.app.conf.canonical_url).rstrip("/"):
            return None
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        headers = {ROUTED_HEADER: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        try:
            async with self._session.get(owner + request.path_qs, headers=headers) as resp:
                body = await resp.read()
                return web.Response(
                    body=body, status=resp.status, content_type="application/json"
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return error_response(503, "OWNER_UNREACHABLE", f"owner worker unreachable: {exc}")

    # -- health -------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        status = self.monitor.status()
        healthy = status["alive"] and status["ready"]
        body = {"status": "UP" if healthy else "DOWN", "components": status["components"]}
        return json_response(body, 200 if healthy else 503)

    async def liveness(self, request: web.Request) -> web.Response:
        status = self.monitor.status()
        alive = status["alive"]
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
        forwarded = await self._forward_to_owner(request, pipeline.table.name, object_id.encode())
        if forwarded is not None:
            return forwarded
        stored = pipeline.table.get(object_id.encode())
        if stored is None:
            return error_response(404, "NOT_FOUND", f"no {type_name} with id {object_id}")
        try:
            row = pipeline.intake.serde.decode(unpack_message(stored), pipeline.object_type.record)
        except DecodeError as exc:  # stored bytes were accepted once; a schema went missing
            return error_response(500, "DECODE_FAILED", exc.message)
        if not row_entitled(principal_of(request), row):
            # Indistinguishable from a missing id: existence is information too.
            return error_response(404, "NOT_FOUND", f"no {type_name} with id {object_id}")
        return json_response(json_row(row))

    def _entitled_page(
        self, request: web.Request, type_name: str, keep: Any = None
    ) -> web.Response:
        """One page of a type's latest versions (all partitions, from the replica), in id
        order, rows of other accounts left out. `next` is the id to pass as `after`."""
        if self.replica is None or not self.replica.ready:
            return error_response(503, "NOT_READY", "the replica is still loading")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return error_response(400, "BAD_REQUEST", "limit must be an integer")
        if not 1 <= limit <= 1000:
            return error_response(400, "BAD_REQUEST", "limit must be between 1 and 1000")
        after = request.query.get("after") or None
        principal = principal_of(request)
        items: list[dict[str, Any]] = []
        cursor = after
        while len(items) < limit:
            page = self.replica.page(type_name, limit, cursor)
            full = False
            for entry in page:
                cursor = entry.key
                row = entry.row
                if row is None or not row_entitled(principal, row):
                    continue
                if keep is not None and not keep(row):
                    continue
                items.append(json_row(row))
                full = len(items) == limit
                if full:
                    break
            if len(page) < limit and not full:  # nothing beyond this page
                cursor = None
                break
        return json_response({"items": items, "next": cursor})

    async def list_objects(self, request: web.Request) -> web.Response:
        type_name = request.match_info["type"]
        if type_name not in self.pipelines:
            known = ", ".join(OBJECT_TYPES)
            return error_response(404, "UNKNOWN_TYPE", f"unknown object type; one of {known}")
        return self._entitled_page(request, type_name)

    async def list_positions(self, request: web.Request) -> web.Response:
        account = request.query.get("account")
        if not account:
            return error_response(400, "BAD_REQUEST", "the account query parameter is required")
        return self._entitled_page(request, "Position", lambda row: row["account"] == account)

    async def _local_position(self, request: web.Request) -> Any:
        """The position (or an error response) for the request's positionKey."""
        key = request.match_info["positionKey"]
        if self.positions is None:
            return error_response(404, "NOT_FOUND", "positions are not served by this worker")
        if not self.app.ready:
            return error_response(503, "NOT_READY", "worker is recovering its tables")
        forwarded = await self._forward_to_owner(
            request, self.positions.store.positions.name, key.encode()
        )
        if forwarded is not None:
            return forwarded
        position = self.positions.store.get(key)
        owner = {"account": position.account} if position is not None else None
        if owner is None or not row_entitled(principal_of(request), owner):
            return error_response(404, "NOT_FOUND", f"no position {key}")
        return position

    async def get_position(self, request: web.Request) -> web.Response:
        position = await self._local_position(request)
        if isinstance(position, web.Response):
            return position
        body = position.to_json(self.positions.prices.price(position.symbol))
        body["lotCount"] = position.lot_count
        for lot in body["lots"]:
            lot.setdefault("lotId", lot.get("tradeId"))
        return json_response(body)

    async def get_position_events(self, request: web.Request) -> web.Response:
        position = await self._local_position(request)
        if isinstance(position, web.Response):
            return position
        events = [
            {
                "version": e.version,
                "type": e.type,
                "tradeId": e.trade.trade_id,
                "correlationId": e.correlation_id,
                "causationId": e.causation_id,
                "time": iso_millis(_from_ms(e.recorded_time)),
                "trade": e.trade.to_json(),
                **({"details": dict(e.details)} if e.details else {}),
            }
            for e in self.positions.store.events(position.position_key, position.version)
        ]
        return json_response({"positionKey": position.position_key, "events": events})


def _from_ms(epoch_ms: int) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC)
