"""Faust's table recovery, with the active partitions restored in bulk first (`tables.restore`).

Faust's `Recovery` works out, per assigned changelog partition, the end offset ("highwater") and
the last offset its store holds, then reads the difference through the worker's consumer.
`BulkRecovery` steps in right after the second of those: it reads what is missing with a
consumer of its own and writes it straight into the RocksDB stores, then tells Faust that the
stores are at their end. Faust's own path only reads what the bulk restore did not get to
(it stops at half the broker request timeout, which bounds each of Faust's recovery steps), and
still serves standby partitions. Agents start only after both, as before.

Installed through Faust's `TableManager` setting (`BlotterTableManager`), so it is the recovery
of every table of the app.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list

from app import metrics
from tables.restore import RestoreTarget, restore_changelogs

log = logging.getLogger(__name__)


class BulkRecovery(Recovery):
    async def _build_offsets(
        self, consumer: Any, tps: Any, destination: Any, title: str
    ) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title == "active":
            await self.restore_in_bulk(tps, destination)

    async def restore_in_bulk(self, tps: Any, offsets: Any) -> None:
        """Bring the stores of the active changelog partitions `tps` to their changelogs' ends;
        `offsets` (Faust's active offsets: the last offset each store holds) is advanced to
        what was restored."""
        started = time.monotonic()
        targets: dict[TopicPartition, RestoreTarget] = {}
        sources: dict[TopicPartition, Any] = {}  # aiokafka partition -> Faust TP
        for tp in tps:
            store = self.tp_to_table[tp].data
            end = self.active_highwaters.get(tp, -1) + 1
            start = offsets[tp] + 1
            if not (isinstance(store, RocksDBStore) and store.use_rocksdict) or start >= end:
                continue
            key = TopicPartition(tp.topic, tp.partition)
            targets[key] = RestoreTarget(store._db_for_partition(tp.partition), start, end)
            sources[key] = tp
        if not targets:
            return
        consumer = self._restore_consumer()
        await consumer.start()
        try:
            result = await restore_changelogs(
                consumer,
                targets,
                offset_key=RocksDBStore.offset_key,
                deadline=started + self.app.conf.broker_request_timeout / 2,
            )
        finally:
            await consumer.stop()
        for key, last in result.applied.items():
            offsets[sources[key]] = last
        for key, records in result.records.items():
            table = self.tp_to_table[sources[key]].name
            metrics.CHANGELOG_RECORDS_RESTORED.labels(table=table).inc(records)
        log.info(
            "restored %d changelog records into %d partition stores in bulk in %.2f s "
            "(%d partitions left to the framework's recovery)",
            sum(result.records.values()),
            len(targets),
            time.monotonic() - started,
            len(targets) - len(result.complete),
        )

    def _restore_consumer(self) -> AIOKafkaConsumer:
        """A consumer in no group, connected as the worker's own consumer is."""
        conf = self.app.conf
        return AIOKafkaConsumer(
            bootstrap_servers=server_list(conf.broker, 9092),
            client_id=f"{conf.broker_client_id}-restore",
            group_id=None,
            enable_auto_commit=False,
            # An offset gone from the log (retention moved its start) restarts at the earliest
            # record still there, as Faust's consumer does; never at the end, which would skip.
            auto_offset_reset="earliest",
            isolation_level="read_committed" if self.app.in_transaction else "read_uncommitted",
            max_partition_fetch_bytes=max(conf.consumer_max_fetch_size, 4 << 20),
            request_timeout_ms=int(conf.broker_request_timeout * 1000),
            **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )


class BlotterTableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = BulkRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
