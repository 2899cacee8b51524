"""The metrics registry: naming rules, exposition, and per-partition series lifecycle."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from app import metrics

ALLOWED_LABELS = {
    "topic",
    "partition",
    "agent",
    "stage",
    "reason",
    "code",
    "object_type",
    "classification",
    "table",
}
BUILD_LABELS = {"version", "python_version", "faust_version"}


def _app_families() -> list:
    return [f for f in metrics.REGISTRY.collect() if f.name.startswith(metrics.PREFIX)]


def test_every_app_metric_follows_the_naming_rules() -> None:
    families = _app_families()
    assert len(families) >= 25
    for family in families:
        assert family.name.startswith("blotter_")
        assert "_ms" not in family.name and "millis" not in family.name, family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        if family.type == "counter":
            assert not family.name.endswith("_total"), "the client appends _total itself"


def test_app_metrics_use_only_low_cardinality_labels() -> None:
    wrappers = [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]
    assert len(wrappers) >= 25
    for wrapper in wrappers:
        labels = set(wrapper._labelnames)
        if wrapper is metrics.BUILD_INFO:
            continue  # Info keeps its labels in the value, checked below
        assert labels <= ALLOWED_LABELS, (wrapper, labels)
    body, _ = metrics.render_latest()
    for family in text_string_to_metric_families(body.decode()):
        if not family.name.startswith("blotter_"):
            continue
        for sample in family.samples:
            extra = set(sample.labels) - ALLOWED_LABELS - {"le"}
            if family.name.startswith("blotter_build"):
                extra -= BUILD_LABELS
            assert extra == set(), (family.name, extra)


def test_render_latest_is_parseable_prometheus_text() -> None:
    metrics.EVENTS_IN.labels(topic="ops-test-render").inc(3)
    body, content_type = metrics.render_latest()
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("blotter_events_in_total", (("topic", "ops-test-render"),))] == 3.0
    build = [k for k in samples if k[0] == "blotter_build_info"]
    assert len(build) == 1 and dict(build[0][1])["version"]


def test_processing_buckets_cover_fifty_microseconds_to_one_second() -> None:
    assert metrics.PROCESSING_BUCKETS[0] == 0.00005
    assert metrics.PROCESSING_BUCKETS[-1] == 1.0
    assert list(metrics.PROCESSING_BUCKETS) == sorted(set(metrics.PROCESSING_BUCKETS))


def test_forget_partition_removes_only_that_partitions_series() -> None:
    topic = "ops-test-revoke"
    for partition in (0, 1):
        metrics.CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(10 + partition)
        metrics.mark_partition_fetched(topic, partition)

    metrics.forget_partition(topic, 0)

    body = metrics.render_latest()[0].decode()
    assert f'blotter_consumer_lag{{partition="1",topic="{topic}"}} 11.0' in body
    assert f'partition="0",topic="{topic}"' not in body
    ages = metrics.PARTITION_FETCH_AGE.ages()
    assert (topic, 1) in ages and (topic, 0) not in ages
    metrics.forget_partition(topic, 1)
    metrics.forget_partition(topic, 1)  # revoking twice is harmless


@given(
    marks=st.lists(
        st.tuples(st.integers(0, 3), st.floats(0, 1e6, allow_nan=False)), min_size=1, max_size=20
    ),
    later=st.floats(0, 1e6, allow_nan=False),
)
def test_fetch_age_is_time_since_the_latest_mark(
    marks: list[tuple[int, float]], later: float
) -> None:
    tracker = metrics.PartitionFetchAges()
    for partition, at in marks:
        tracker.mark("t", partition, now=at)
    now = max(at for _, at in marks) + later
    last = {}
    for partition, at in marks:
        last[partition] = at
    assert tracker.ages(now=now) == {("t", p): now - at for p, at in last.items()}


def test_fetch_age_is_computed_at_scrape_time() -> None:
    tracker = metrics.PartitionFetchAges()
    tracker.mark("t", 7, now=0.0)  # monotonic clock origin: long ago
    (family,) = tracker.collect()
    (sample,) = family.samples
    assert sample.labels == {"topic": "t", "partition": "7"}
    assert sample.value > 0
