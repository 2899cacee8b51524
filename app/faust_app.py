"""The Faust application object, configured from `Settings`.

Two departures from a stock `faust.App`, both for operators (plus the end of a rebalance
waking the handlers that wait for it, `app.ownership`):
- the web server starts *before* table recovery, so `/health/readiness` can answer 503 while the
  worker recovers instead of refusing connections (Faust starts it only after recovery);
- in embedded mode, the broker is started (if nothing listens on its port) and the app's topics
  are pre-created with the configured partition counts before the consumer subscribes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import faust

from app import embedded, faust_fixes, logs, membership, metrics, ownership, send_batching
from app.broker import EmbeddedBroker, create_topics, port_open
from app.config import Settings
from tables import guard
from tables.recovery import BlotterTableManager

log = logging.getLogger(__name__)

CLEAN_SHUTDOWN_MARKER = "clean-shutdown"


class BlotterApp(faust.App):
    """faust.App plus readiness state and the embedded-broker bootstrap."""

    settings: Settings
    ready: bool = False
    started_at: float = 0.0
    ready_at: float | None = None
    embedded_broker: EmbeddedBroker | None = None
    web_init_hooks: list[Callable[[Any], None]]
    internal_topics: list[str]

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        ownership.on_rebalance_end(self)

    async def on_first_start(self) -> None:
        await super().on_first_start()
        self.started_at = time.monotonic()
        if self.settings.embedded_broker:
            await self._ensure_embedded_broker()
        await self._create_topics()
        await self._drop_unbacked_table_state()

    async def _create_topics(self) -> None:
        """Create missing app topics with the configured partition counts, before any client
        can auto-create them with a broker default (one partition on the embedded broker),
        which would break co-partitioning with the tables."""
        topics = self.settings.topics
        try:
            await create_topics(
                self.settings.bootstrap_servers,
                [*topics.all_topics(), *self.internal_topics],
                self.settings.topic_partitions,
                compacted=(topics.changes,),
            )
        except Exception as exc:
            if self.settings.embedded_broker:
                raise
            log.warning("could not create topics (pre-create them on the cluster): %s", exc)

    async def _drop_unbacked_table_state(self) -> None:
        """Keep local table state only if its changelog still backs it.

        After a crash (no clean-shutdown marker) every local store is dropped: Faust writes
        RocksDB at once and the changelog asynchronously, so a killed worker's local state can
        hold writes the changelog never got, while the source offsets were not committed. The
        redelivered inputs would then look applied here, yet be missing for whoever rebuilds
        from the changelog (found by the reliability harness: a trade lost after kill -9 and a
        later partition move). Rebuilding from the changelog costs recovery time, not data.
        """
        tabledir = self.conf.tabledir
        marker = self.settings.data_dir / CLEAN_SHUTDOWN_MARKER
        clean = marker.exists()
        marker.unlink(missing_ok=True)
        if not tabledir.exists():
            return
        if not clean:
            dropped = guard.drop(guard.all_partitions(tabledir, self.tables.keys()))
            if dropped:
                log.warning("last run did not stop cleanly: rebuilding %d stores", dropped)
            return
        changelogs = {
            name: table.changelog_topic.get_topic_name() for name, table in self.tables.items()
        }
        ends = await guard.changelog_end_offsets(
            self.settings.bootstrap_servers, changelogs.values()
        )
        guard.drop(guard.stale_partitions(tabledir, changelogs, ends))

    async def _ensure_embedded_broker(self) -> None:
        host, port = self.settings.broker_urls[0].split(":")
        if not port_open(host, int(port)):
            broker = EmbeddedBroker(
                int(port),
                self.settings.data_dir / "broker",
                log_path=self.settings.data_dir / "broker.log",
            )
            broker.start()
            self.embedded_broker = broker
            log.info("started embedded broker on %s", broker.bootstrap)

    async def on_started(self) -> None:
        # Serve health endpoints during recovery (503 until ready).
        await self.on_started_init_web_server()
        await super().on_started()
        if not self.should_stop:
            self.ready = True
            self.ready_at = time.monotonic()
            metrics.WORKER_READY.set(1)
            # Start to ready is table recovery plus assignment: Faust recovers all tables together.
            recovery = self.ready_at - self.started_at
            for name in self.tables:
                metrics.TABLE_RECOVERY_SECONDS.labels(table=name).set(recovery)
            log.info("worker ready in %.2f s", self.ready_at - self.started_at)

    async def on_stop(self) -> None:
        self.ready = False
        metrics.WORKER_READY.set(0)
        await super().on_stop()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        if self.started_at:  # stores closed, producer flushed: local state = changelogs
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            (self.settings.data_dir / CLEAN_SHUTDOWN_MARKER).write_text("ok\n")
        if self.embedded_broker is not None:
            self.embedded_broker.stop()
            self.embedded_broker = None

    def on_webserver_init(self, web: Any) -> None:
        super().on_webserver_init(web)
        for hook in self.web_init_hooks:
            hook(web)


def create_app(settings: Settings) -> BlotterApp:
    """A configured, not yet started, app (agents and views are registered by the caller)."""
    faust_fixes.install()
    send_batching.install()
    if settings.leave_group_on_shutdown:
        membership.install_leave_group_on_shutdown()
    if settings.embedded_broker:
        embedded.install_idle_fetch_backoff()
    app = BlotterApp(
        settings.app_id,
        broker=settings.broker_url,
        store="rocksdb://",
        TableManager=BlotterTableManager,
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        consumer_group_instance_id=settings.consumer_group_instance_id,
        broker_session_timeout=10.0 if settings.embedded_broker else 60.0,
        broker_heartbeat_interval=1.0 if settings.embedded_broker else 3.0,
        broker_request_timeout=30.0,
        broker_commit_every=1000,
        producer_linger=0.005,
        stream_wait_empty=False,
        table_standby_replicas=0,
        logging_config=logs.logging_dict_config(settings.log_level, settings.log_json),
    )
    app.settings = settings
    app.web_init_hooks = []
    app.internal_topics = []
    return app
