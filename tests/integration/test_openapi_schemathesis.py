"""Schemathesis against a real worker: generated requests for every served operation, with no
server error and every answer (status, content type, body) as the OpenAPI document says.

Realistic OMS traffic is produced first and requests for ids that exist are mixed into the
generated ones, so the 200 paths are checked as well as the 404s. Failures are collected rather
than raised, so one run reports every broken operation with a curl command to reproduce it
(and hypothesis does not spend the time budget shrinking).
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import load_settings
from app.domain.objects import OBJECT_TYPES
from app.producer import OmsProducer
from app.serde import build_serde
from app.simulator import OmsSimulator
from tests.conftest import await_condition
from tests.unit.test_openapi import registered_routes
from web.openapi import openapi_document

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BUSINESS_DATE = dt.date(2026, 11, 20)
SIMULATED_EVENTS = 400
MAX_EXAMPLES = 30  # per operation and generation source
FUZZ_BUDGET_S = 60.0
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def produce_traffic(worker: Any) -> dict[str, list[str]]:
    """Produce simulator events; return the ids per object type and the position keys."""
    settings_ = load_settings(worker.env)
    sim = OmsSimulator(seed=17, business_date=BUSINESS_DATE)
    known: dict[str, set[str]] = defaultdict(set)
    async with OmsProducer(settings_, build_serde(None)) as producer:
        for _, event in zip(range(SIMULATED_EVENTS), sim.events(), strict=False):
            await producer.send_record(event.topic_attr, event.key, event.record, event.value)
            if event.record in OBJECT_TYPES:
                known[event.record].add(event.key)
            elif event.record == "Trade":
                known["Position"].add(event.key)
        await producer.flush()
    return {name: sorted(ids) for name, ids in known.items()}


def status_of(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def served_urls(base: str, known: dict[str, list[str]]) -> set[str]:
    urls = {
        f"{base}/v1/objects/{type_name}/{quote(object_id)}"
        for type_name in OBJECT_TYPES
        for object_id in known.get(type_name, ())
    }
    urls |= {f"{base}/v1/positions/{quote(key)}" for key in known.get("Position", ())}
    return urls


def known_parameters(path: str, known: dict[str, list[str]]) -> list[dict[str, str]]:
    """Path parameters naming data that exists, for the operations that take them."""
    if path == "/v1/objects/{type}/{id}":
        return [
            {"type": type_name, "id": object_id}
            for type_name in OBJECT_TYPES
            for object_id in known.get(type_name, ())
        ]
    if path.startswith("/v1/positions/{positionKey}"):
        return [{"positionKey": key} for key in known.get("Position", ())]
    return []


def strategies_for(operation: Any, known: dict[str, list[str]]) -> list[Any]:
    strategies = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    if operation.path_parameters or operation.query:
        strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    existing = known_parameters(operation.path, known)
    if existing:
        strategies.append(
            st.sampled_from(existing).flatmap(
                lambda params: operation.as_strategy(path_parameters=params)
            )
        )
    return strategies


def fuzz(
    operation: Any, strategy: Any, base_url: str, session: Any, failures: dict
) -> Counter[int]:
    """Run up to MAX_EXAMPLES cases, recording the first case of each distinct failure under
    (operation, failure title); returns the count of each response status (0: no response)."""
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        try:
            response = case.call(base_url=base_url, session=session)
        except Exception as exc:  # a dropped connection, a timeout: the server misbehaved
            statuses[0] += 1
            failures.setdefault((operation.label, type(exc).__name__), f"{exc}\n  {case}")
            return
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseExceptionGroup as group:  # schemathesis' FailureGroup: one per failed check
            for failure in group.exceptions:
                title = getattr(failure, "title", type(failure).__name__)
                report = f"{getattr(failure, 'message', failure)}\n  {case.as_curl_command()}"
                failures.setdefault((operation.label, title), report)

    run()
    return statuses


def report(failures: dict[tuple[str, str], str]) -> str:
    return f"{len(failures)} distinct failures:\n" + "\n\n".join(
        f"{label} -- {title}:\n{detail}" for (label, title), detail in sorted(failures.items())
    )


async def test_schemathesis_finds_no_server_errors_and_no_schema_violations(deployment) -> None:
    worker = deployment(BUSINESS_DATE=BUSINESS_DATE.isoformat())
    worker.start()
    worker.wait_ready()
    known = await produce_traffic(worker)
    assert set(known) == {*OBJECT_TYPES, "Position"}, "the sample must cover every kind of data"

    pending = served_urls(worker.url, known)

    def all_served() -> bool:
        pending.difference_update({url for url in pending if status_of(url) == 200})
        return not pending

    await await_condition(all_served, 60, "every produced object and position served")

    schema = schemathesis.openapi.from_dict(openapi_document())
    served = {path for _, path in registered_routes()}
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path in served]
    assert {op.path for op in operations} == served

    failures: dict[tuple[str, str], str] = {}
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    started = time.monotonic()
    with requests.Session() as session:
        for operation in operations:
            for strategy in strategies_for(operation, known):
                statuses[operation.label] += fuzz(
                    operation, strategy, worker.url, session, failures
                )
    elapsed = time.monotonic() - started

    assert not failures, report(failures)
    assert all(statuses[op.label][200] > 0 for op in operations), statuses
    assert statuses["GET /v1/objects/{type}/{id}"][404] > 0, "unknown ids and types answer 404"
    assert elapsed < FUZZ_BUDGET_S, f"fuzzing took {elapsed:.1f} s: {statuses}"
    assert worker.stop() == 0
