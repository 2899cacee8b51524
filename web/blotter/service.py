"""The blotter view of one worker: replica, change feed, fan-out and the WebSocket route.

`install_blotter(app, serde)` is the only thing the entry point calls. It mounts the stream on
the worker's aiohttp server and starts the feed with it (the web server starts before table
recovery finishes, so the replica loads in parallel with recovery) as a dependency of the app,
which stops it with the worker.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.metadata import BLOTTER_OBJECT_TYPES
from app.serde import AvroSerde
from web.auth_config import AuthLimits
from web.auth_limits import ConnectionLimiter, RateLimiter
from web.blotter.config import BlotterConfig
from web.blotter.feed import ChangeFeed
from web.blotter.principal import Authenticator, from_auth_middleware
from web.blotter.replica import Replica, VersionedRow
from web.blotter.session import SubscribeGuard
from web.blotter.stream import PATH, StreamHandler
from web.blotter.subscriptions import FanOut


class BlotterService:
    """Everything the blotter stream needs on one worker, and the replica's read API."""

    def __init__(
        self,
        bootstrap_servers: str,
        changes_topic: str,
        serde: AvroSerde,
        config: BlotterConfig | None = None,
        *,
        client_id: str = "blotter-replica",
    ) -> None:
        self.config = config or BlotterConfig()
        self.replica = Replica(tuple(BLOTTER_OBJECT_TYPES))
        self.fanout = FanOut(self.replica)
        self.feed = ChangeFeed(
            bootstrap_servers,
            changes_topic,
            serde,
            self.replica,
            client_id=client_id,
            poll_interval_s=self.config.feed_poll_interval_s,
        )
        self.stream = StreamHandler(self)
        #: Resolves the caller of a handshake: by default the one the auth middleware verified.
        self.authenticate: Authenticator = from_auth_middleware
        #: Checked before each subscription (per-user rate limits); None = no limit.
        self.subscribe_guard: SubscribeGuard | None = None
        #: Per-user limits (issue: connections, subscribe rate); None = unlimited.
        self.connection_limiter: ConnectionLimiter | None = None
        self.subscribe_limiter: RateLimiter | None = None

    def install(self, web_server: Any) -> None:
        """Mount the stream on Faust's aiohttp server (a `web_init_hooks` hook)."""
        web_app: web.Application = web_server.web_app
        web_app.router.add_get(PATH, self.stream.handle)
        web_app.on_shutdown.append(self.stream.close_all)

    # -- reads for REST --------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """The replica holds everything the change feed had when the worker started."""
        return self.replica.ready

    def get(self, object_type: str, object_id: str) -> VersionedRow | None:
        """Latest version of one object (any partition), from memory."""
        return self.replica.get(object_type, object_id)

    def page(
        self, object_type: str, limit: int = 100, after: str | None = None
    ) -> list[VersionedRow]:
        """Rows of a type in id order after id `after` (keyset pagination)."""
        return self.replica.page(object_type, limit, after)

    def stats(self) -> dict[str, Any]:
        """Figures for `/health/detailed`."""
        return {
            "ready": self.replica.ready,
            "objects": {t: self.replica.count(t) for t in self.replica.object_types},
            "connections": self.stream.connections,
            "filterGroups": self.fanout.group_count,
            "caughtUpSeconds": self.feed.caught_up_s,
        }


def install_blotter(app: Any, serde: AvroSerde) -> BlotterService:
    """Create the worker's blotter service; when the worker's web server starts, mount the
    stream and start the change feed (as a dependency of the app, so it stops with it).

    Starting the feed with the web server rather than with the app keeps CLI commands that
    start the app as a client (`simulate`, ...) from loading a replica they never serve.
    """
    settings = app.settings
    service = BlotterService(
        settings.bootstrap_servers,
        settings.topics.changes,
        serde,
        BlotterConfig.from_env(),
        client_id=f"{settings.app_id}-blotter-replica",
    )
    limits = AuthLimits.from_env()
    service.connection_limiter = ConnectionLimiter.from_limits(limits)
    service.subscribe_limiter = RateLimiter.for_subscribes(limits)

    def install(web_server: Any) -> None:
        service.install(web_server)
        app.add_future(app.add_runtime_dependency(service.feed))

    app.web_init_hooks.append(install)
    return service
