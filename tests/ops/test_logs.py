"""JSON logging: one object per line, correlation context on every record, no credentials."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mode.utils import logging as mode_logging

from app import logs

TOKEN_ALPHABET = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
TOKENS = st.text(TOKEN_ALPHABET, min_size=12, max_size=64)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; give each test a clean slate back."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    names = list(logs.library_levels("INFO"))
    saved_levels = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    logs.configure_logging("INFO", json=True, stream=out)
    return out


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


# -- format ---------------------------------------------------------------------------------------
def test_each_record_is_one_json_object_with_the_standard_fields(stream: io.StringIO) -> None:
    logging.getLogger("app.test").warning("position %s rebuilt", "ACC1:IBM")
    (record,) = _records(stream)
    assert record["level"] == "WARNING"
    assert record["logger"] == "app.test"
    assert record["message"] == "position ACC1:IBM rebuilt"
    assert record["timestamp"].endswith("Z") and "T" in record["timestamp"]


def test_library_loggers_are_bridged_at_explicit_levels(stream: io.StringIO) -> None:
    logging.getLogger("aiokafka.consumer.group_coordinator").info("Joined group")
    logging.getLogger("aiokafka.conn").debug("fetch request sent")
    logging.getLogger("mode.worker").info("worker started")
    logging.getLogger("faust.tables").debug("table debug detail")
    assert [(r["logger"], r["message"]) for r in _records(stream)] == [
        ("aiokafka.consumer.group_coordinator", "Joined group"),
        ("mode.worker", "worker started"),
    ]
    for name in ("faust", "mode", "aiokafka"):
        assert logging.getLogger(name).level == logging.INFO


def test_debug_level_keeps_aiokafka_at_info() -> None:
    out = io.StringIO()
    logs.configure_logging("DEBUG", stream=out)
    assert logging.getLogger("faust").level == logging.DEBUG
    assert logging.getLogger("aiokafka").level == logging.INFO
    assert logging.getLogger("aiohttp.access").level == logging.WARNING


def test_configure_logging_is_idempotent(stream: io.StringIO) -> None:
    logs.configure_logging("INFO", stream=stream)
    logging.getLogger("app.test").info("once")
    assert len(_records(stream)) == 1


def test_text_mode_for_local_development_carries_context() -> None:
    out = io.StringIO()
    logs.configure_logging("INFO", json=False, stream=out)
    with logs.log_context(correlationId="c-9", partition=2):
        logging.getLogger("app.test").info("hello")
    line = out.getvalue().strip()
    assert "INFO" in line and "app.test: hello" in line
    assert "correlationId=c-9" in line and "partition=2" in line


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure_logging("LOUD")


def test_the_faust_worker_keeps_the_json_handler_when_it_resets_logging() -> None:
    """mode's Worker clears the root handlers at start and applies `logging_config`."""
    out = io.StringIO()
    config = logs.logging_dict_config("INFO", json=True, stream=out)
    mode_logging.setup_logging(loglevel="info", logfile=None, logging_config=config)
    logging.getLogger("faust.worker").info("ready")
    assert [r["message"] for r in _records(out)] == ["ready"]


# -- context --------------------------------------------------------------------------------------
def test_bound_context_appears_on_records_and_goes_away(stream: io.StringIO) -> None:
    log = logging.getLogger("agents.positions")
    with logs.log_context(
        correlationId="corr-1", causationId="cause-1", topic="trade-events", partition=3,
        offset=42, agent="positions",
    ):  # fmt: skip
        log.info("applied")
    log.info("idle")
    applied, idle = _records(stream)
    assert {k: applied[k] for k in logs.CONTEXT_FIELDS} == {
        "correlationId": "corr-1",
        "causationId": "cause-1",
        "topic": "trade-events",
        "partition": 3,
        "offset": 42,
        "agent": "positions",
    }
    assert not set(logs.CONTEXT_FIELDS) & set(idle)


def test_nested_contexts_merge_and_unwind(stream: io.StringIO) -> None:
    with logs.log_context(agent="coldpath", topic="backdated-trades"):
        with logs.log_context(correlationId="c-2", topic="trade-events", causationId=None):
            assert logs.current_context() == {
                "agent": "coldpath",
                "topic": "trade-events",
                "correlationId": "c-2",
            }
        assert logs.current_context() == {"agent": "coldpath", "topic": "backdated-trades"}
    assert logs.current_context() == {}


def test_explicit_extra_wins_over_bound_context(stream: io.StringIO) -> None:
    with logs.log_context(topic="trade-events"):
        logging.getLogger("x").info("m", extra={"topic": "order-events"})
    assert _records(stream)[0]["topic"] == "order-events"


def test_bind_and_reset_without_a_with_block(stream: io.StringIO) -> None:
    token = logs.bind_context(offset=7)
    logging.getLogger("x").info("in")
    logs.reset_context(token)
    logging.getLogger("x").info("out")
    inside, outside = _records(stream)
    assert inside["offset"] == 7 and "offset" not in outside


async def test_agents_running_as_tasks_do_not_see_each_others_context(
    stream: io.StringIO,
) -> None:
    barrier = asyncio.Event()

    async def agent(name: str, offset: int) -> None:
        with logs.log_context(agent=name, offset=offset):
            await barrier.wait()  # both contexts are bound at the same time
            logging.getLogger("agents").info("event")

    tasks = [asyncio.create_task(agent("a", 1)), asyncio.create_task(agent("b", 2))]
    await asyncio.sleep(0)
    barrier.set()
    await asyncio.gather(*tasks)
    assert sorted((r["agent"], r["offset"]) for r in _records(stream)) == [("a", 1), ("b", 2)]


def test_message_fields_reads_a_consumed_message_and_its_row() -> None:
    message = SimpleNamespace(topic="trade-events", partition=5, offset=99)
    fields = logs.message_fields(message, {"correlationId": "c", "causationId": None}, "positions")
    assert fields == {
        "topic": "trade-events",
        "partition": 5,
        "offset": 99,
        "agent": "positions",
        "correlationId": "c",
    }


# -- redaction ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /v1/stream?blotterId=b1&access_token=abc.DEF-123_x HTTP/1.1", "abc.DEF"),
        ("headers: {'Authorization': 'Bearer abcdefghijklmnop'}", "abcdefghijklmnop"),
        ("Authorization: bearer tok+en/with=", "tok+en"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
        ('{"access_token": "opaque-token-value"}', "opaque-token-value"),
        ("bad token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl", "eyJzdWIiOiJ1In0"),
    ],
)
def test_redact_removes_tokens(text: str, secret: str) -> None:
    cleaned = logs.redact(text)
    assert secret not in cleaned
    assert logs.REDACTED in cleaned


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "basic validation failed for positionKey ACC1:IBM at offset 42 (tokens=3)"
    assert logs.redact(text) == text


@given(token=TOKENS, prefix=st.sampled_from(["access_token=", "Bearer ", "Authorization: Bearer "]))
def test_no_token_survives_formatting(token: str, prefix: str) -> None:
    out = io.StringIO()
    logs.configure_logging("INFO", stream=out)
    logging.getLogger("web").info("request %s%s done", prefix, token)
    assert token not in out.getvalue()
    assert json.loads(out.getvalue())["message"].startswith("request ")


def test_tokens_in_extras_and_tracebacks_are_redacted(stream: io.StringIO) -> None:
    log = logging.getLogger("web")
    log.info("upgrade", extra={"url": "/v1/trade-blotter/stream?access_token=SECRETSECRET"})
    try:
        raise PermissionError("rejected Authorization: Bearer SECRETSECRET2")
    except PermissionError:
        log.exception("auth failed")
    output = stream.getvalue()
    assert "SECRETSECRET" not in output
    upgrade, failed = _records(stream)
    assert upgrade["url"].endswith(f"access_token={logs.REDACTED}")
    assert "PermissionError" in failed["exception"]
