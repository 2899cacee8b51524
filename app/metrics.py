"""Every Prometheus metric the worker exports, defined in one place.

Why one module: the Grafana dashboard, the alert rules and the tests all check their queries
against this registry, so a metric that is renamed here breaks a test instead of a 3 a.m. page.

Naming rules (Prometheus conventions, enforced by review and by tests/ops):

- one prefix, `blotter_`, for everything the app defines;
- base units in the name: `_seconds` (never milliseconds), `_bytes`; counters end in `_total`
  (prometheus-client appends it: `Counter("blotter_events_in")` exports `blotter_events_in_total`);
- labels are low-cardinality only: topic, partition, agent, stage, reason, code, object_type,
  classification, table. Never an account, symbol, position key, trade or order id: a label value
  per business object would grow the time-series count without bound;
- a gauge that describes a partition this worker no longer owns is removed on revocation
  (`forget_partition`), so sums across workers do not count a partition twice after a rebalance.

The registry is module-level (not prometheus-client's global default) so that importing this module
twice, or from tests, never fails with "Duplicated timeseries", and so that `/metrics` exports only
what is documented here plus the standard process/platform/GC collectors.
"""

from __future__ import annotations

import contextlib
import platform
import threading
import time
from collections.abc import Iterable, Iterator
from importlib import metadata

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

PREFIX = "blotter_"

#: The classic text format: every Prometheus server version parses it, and every name here is a
#: legacy-valid name, so the UTF-8 escaping of newer format versions buys nothing.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Per-event processing inside an agent: the hotpath target is well under 5 ms p99, so the buckets
#: are dense from 50 microseconds to 10 ms and sparse up to 1 s (a stuck await, a slow store).
PROCESSING_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

#: A coldpath replay rebuilds a whole position history: milliseconds for small ones, tens of
#: seconds for very long ones.
REPLAY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REGISTRY = CollectorRegistry(auto_describe=True)
for _standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    # The standard collectors are registered in the default registry at import; they are
    # stateless readers, so registering the same instances here as well is safe.
    REGISTRY.register(_standard)


# -- intake ---------------------------------------------------------------------------------------
EVENTS_IN = Counter(
    "blotter_events_in",
    "Messages read from an input topic (before decoding).",
    ["topic"],
    registry=REGISTRY,
)
EVENTS_APPLIED = Counter(
    "blotter_events_applied",
    "Events accepted and applied to a table or position.",
    ["topic"],
    registry=REGISTRY,
)
EVENTS_STALE = Counter(
    "blotter_events_stale",
    "Events ignored because a version with an equal or higher sequence was already applied.",
    ["topic"],
    registry=REGISTRY,
)
EVENTS_DEAD_LETTERED = Counter(
    "blotter_events_dead_lettered",
    "Messages sent to the topic's DLQ; stage says where they failed (decode, validate, apply).",
    ["topic", "stage"],
    registry=REGISTRY,
)
EVENTS_REKEYED = Counter(
    "blotter_events_rekeyed",
    "Messages forwarded to the re-key topic because they arrived off their owner partition.",
    ["topic"],
    registry=REGISTRY,
)
EVENTS_PUBLISHED = Counter(
    "blotter_events_published",
    "Events the app produced to an output topic.",
    ["topic"],
    registry=REGISTRY,
)
SEND_FAILURES = Counter(
    "blotter_send_failures",
    "Records the broker did not accept (a batch that failed after the client's retries).",
    ["topic"],
    registry=REGISTRY,
)
TRANSIENT_ERRORS = Counter(
    "blotter_transient_errors",
    "Retried failures of a dependency (schema registry, broker) while handling a message.",
    ["topic"],
    registry=REGISTRY,
)
EVENTS_ABANDONED = Counter(
    "blotter_events_abandoned",
    "Events left unacknowledged for the new owner because their partition was revoked while "
    "they were handled (nothing was written).",
    ["topic"],
    registry=REGISTRY,
)

# -- positions ------------------------------------------------------------------------------------
TRADES_DUPLICATE = Counter(
    "blotter_trades_duplicate",
    "Trades whose tradeId was already applied to the position (redelivery or resend).",
    registry=REGISTRY,
)
TRADES_CLASSIFIED = Counter(
    "blotter_trades_classified",
    "Trades by classification: CURRENT_DATED, FORWARD_DATED or BACKDATED.",
    ["classification"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "blotter_processing_seconds",
    "Time an agent spends on one event, from dequeue to the last table write/send.",
    ["agent"],
    buckets=PROCESSING_BUCKETS,
    registry=REGISTRY,
)
POSITIONS_PROVISIONAL = Gauge(
    "blotter_positions_provisional",
    "Positions owned by this worker that are PROVISIONAL (a backdated trade awaits the coldpath).",
    registry=REGISTRY,
)
POSITIONS_PROVISIONAL_OLDEST_AGE = Gauge(
    "blotter_positions_provisional_oldest_age_seconds",
    "Age of the oldest PROVISIONAL position owned by this worker; 0 when there is none.",
    registry=REGISTRY,
)

# -- coldpath -------------------------------------------------------------------------------------
COLDPATH_QUEUE_DEPTH = Gauge(
    "blotter_coldpath_queue_depth",
    "Backdated trades routed to the coldpath and not yet reconciled.",
    registry=REGISTRY,
)
COLDPATH_RESENT = Counter(
    "blotter_coldpath_resent",
    "Backdated trades sent to the coldpath again because their trade was redelivered while "
    "still pending (its first copy may have been lost in a crash).",
    registry=REGISTRY,
)
COLDPATH_REPLAY_SECONDS = Histogram(
    "blotter_coldpath_replay_seconds",
    "Time to rebuild one position from its full history and publish the correction.",
    buckets=REPLAY_BUCKETS,
    registry=REGISTRY,
)

# -- consumer and tables --------------------------------------------------------------------------
CONSUMER_LAG = Gauge(
    "blotter_consumer_lag",
    "Messages between the committed/processed offset and the high watermark, per partition.",
    ["topic", "partition"],
    registry=REGISTRY,
)
TABLE_RECOVERY_SECONDS = Gauge(
    "blotter_table_recovery_seconds",
    "Duration of the last changelog recovery of a table on this worker.",
    ["table"],
    registry=REGISTRY,
)
CHANGELOG_RECORDS_RESTORED = Counter(
    "blotter_changelog_records_restored",
    "Changelog records written into local stores by the bulk restore at recovery.",
    ["table"],
    registry=REGISTRY,
)
WORKER_READY = Gauge(
    "blotter_worker_ready",
    "1 when partitions are assigned and tables recovered (readiness), else 0.",
    registry=REGISTRY,
)
AGENT_ERRORS = Counter(
    "blotter_agent_errors",
    "Unhandled exceptions that stopped an agent (the liveness probe fails after one).",
    ["agent"],
    registry=REGISTRY,
)

# -- web view -------------------------------------------------------------------------------------
WS_CONNECTIONS = Gauge(
    "blotter_ws_connections",
    "Open WebSocket connections.",
    registry=REGISTRY,
)
WS_SUBSCRIPTIONS = Gauge(
    "blotter_ws_subscriptions",
    "Active blotter subscriptions by object type.",
    ["object_type"],
    registry=REGISTRY,
)
WS_ROWS_SENT = Counter(
    "blotter_ws_rows_sent",
    "Rows sent to WebSocket subscribers (snapshot and changes).",
    registry=REGISTRY,
)
WS_ROWS_CONFLATED = Counter(
    "blotter_ws_rows_conflated",
    "Pending changes replaced by a newer change of the same key while a subscriber had no credit.",
    registry=REGISTRY,
)
WS_ROWS_DROPPED = Counter(
    "blotter_ws_rows_dropped",
    "Rows discarded without being sent (subscription closed or over its bound).",
    registry=REGISTRY,
)
WS_SLOW_CONSUMER_CLOSES = Counter(
    "blotter_ws_slow_consumer_closes",
    "Subscriptions closed with SLOW_CONSUMER because their pending changes passed the bound.",
    registry=REGISTRY,
)
WS_ERRORS = Counter(
    "blotter_ws_errors",
    "Error messages sent to WebSocket clients, by error code (INVALID_FILTER, ...).",
    ["code"],
    registry=REGISTRY,
)
AUTH_FAILURES = Counter(
    "blotter_auth_failures",
    "Rejected authentications, by reason (missing, expired, bad_signature, issuer, ...).",
    ["reason"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "blotter_rate_limited",
    "Requests refused by a per-user limit (connections or subscribe rate).",
    registry=REGISTRY,
)

# -- identity -------------------------------------------------------------------------------------
BUILD_INFO = Info(
    "blotter_build",
    "Version of the running build; constant 1, the information is in the labels.",
    registry=REGISTRY,
)


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def set_build_info(version: str | None = None, **extra: str) -> None:
    """Set the build_info labels; the defaults come from installed package metadata so an image
    built from a tagged commit reports its version without any extra configuration."""
    BUILD_INFO.info(
        {
            "version": version or _package_version("trade-blotter"),
            "python_version": platform.python_version(),
            "faust_version": _package_version("faust-streaming"),
            **extra,
        }
    )


set_build_info()


# -- partition fetch tracking ---------------------------------------------------------------------
class PartitionFetchAges(Collector):
    """Exports seconds since each assigned partition was last fetched, computed at scrape time.

    A gauge updated only on fetch would freeze at its last value exactly when a partition stalls,
    which is the case the metric exists for; computing the age when scraped keeps it honest.
    """

    name = "blotter_partition_last_fetch_age_seconds"

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def mark(self, topic: str, partition: int, now: float | None = None) -> None:
        with self._lock:
            self._last[(topic, partition)] = time.monotonic() if now is None else now

    def forget(self, topic: str, partition: int) -> None:
        with self._lock:
            self._last.pop((topic, partition), None)

    def ages(self, now: float | None = None) -> dict[tuple[str, int], float]:
        current = time.monotonic() if now is None else now
        with self._lock:
            return {tp: max(0.0, current - at) for tp, at in self._last.items()}

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for (topic, partition), age in sorted(self.ages().items()):
            family.add_metric([topic, str(partition)], age)
        return [family]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self.name,
            "Seconds since this worker last fetched from an assigned partition (stall detection).",
            labels=["topic", "partition"],
        )


PARTITION_FETCH_AGE = PartitionFetchAges()
REGISTRY.register(PARTITION_FETCH_AGE)


def mark_partition_fetched(topic: str, partition: int) -> None:
    """Record that an assigned partition was just fetched (called from the consumer hook)."""
    PARTITION_FETCH_AGE.mark(topic, partition)


def forget_partition(topic: str, partition: int) -> None:
    """Drop every per-partition series of a revoked partition; its new owner reports it now."""
    PARTITION_FETCH_AGE.forget(topic, partition)
    with contextlib.suppress(KeyError):
        CONSUMER_LAG.remove(topic, str(partition))


# -- exposition -----------------------------------------------------------------------------------
def render_latest() -> tuple[bytes, str]:
    """The `/metrics` response: (body, content type) in the Prometheus text format."""
    return generate_latest(REGISTRY), CONTENT_TYPE


_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


def _sample_names(family: Metric) -> Iterator[str]:
    for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",)):
        yield family.name + suffix


def exported_metric_names(prefix: str = PREFIX) -> frozenset[str]:
    """Every sample name the registry can export under `prefix`, including `_total`, `_bucket`,
    `_count`, `_sum` and `_info` forms, whether or not a labelled child exists yet.

    Dashboards and alert rules query sample names, so this is what they are checked against.
    """
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(n for n in _sample_names(family) if n.startswith(prefix))
    return frozenset(names)
