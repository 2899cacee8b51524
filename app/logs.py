"""JSON logs on stdout, with the event's correlation context and without credentials.

Why JSON on stdout: on Kubernetes the container runtime collects stdout, and a log pipeline can
index `correlationId` or `partition` only if they are fields, not words in a sentence.

Why a contextvar: Faust runs each agent as its own asyncio task, and a contextvar set inside a task
is seen by every log call that task makes (our code, Faust's, aiokafka's) and by no other task. An
agent binds `topic`, `partition`, `offset`, `agent`, `correlationId`, `causationId` once per event
with `log_context(...)`, and every record logged while that event is handled carries them.

Why a redacting filter: browsers pass the JWT as `access_token=` in the WebSocket URL, and aiohttp
and client libraries put URLs and headers into exception messages; a token in a log line is a
credential leak that outlives the token's audit trail.

The same configuration is used twice: `configure_logging()` applies it at import time (CLI commands,
tests, the first lines of a worker), and `logging_dict_config()` gives the identical dict to
Faust's `logging_config` setting, because the Faust/mode worker resets the root logger when it
starts and would otherwise replace these handlers with its coloured console handler.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

#: Context fields the pipeline binds; others may be bound too, these are the documented ones.
CONTEXT_FIELDS = ("correlationId", "causationId", "topic", "partition", "offset", "agent")

REDACTED = "[REDACTED]"

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "blotter_log_context", default=_EMPTY
)

#: Loggers of the libraries the worker runs on. Their levels are set explicitly because a library
#: logger left at NOTSET/DEBUG makes every fetch and heartbeat build a record: measurable CPU.
LIBRARY_LOGGERS = ("faust", "mode", "aiokafka", "aiohttp", "asyncio", "rocksdict")

_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # query parameters: ?access_token=...&  (browsers' WebSocket auth), also refresh/id tokens
    (re.compile(r"(?i)\b((?:access|refresh|id)_token=)[^\s&\"'\\,;]+"), rf"\1{REDACTED}"),
    # the same names as JSON/dict keys: "access_token": "..."
    (
        re.compile(r"(?i)([\"']?(?:access|refresh|id)_token[\"']?\s*:\s*[\"'])[^\"']+"),
        rf"\1{REDACTED}",
    ),
    # Bearer <token>, in headers, reprs or prose
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1{REDACTED}"),
    # Authorization: Basic <credentials> ("basic" alone is too common a word to match)
    (
        re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?\s*basic\s+)[A-Za-z0-9+/]+=*"),
        rf"\1{REDACTED}",
    ),
    # any JWT-shaped string (header.payload.signature, base64url, header starts with `{"`)
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
)

# Attributes every LogRecord has; anything else on a record came from `extra=` or our filter.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


def redact(text: str) -> str:
    """`text` with bearer tokens, `access_token=` values and JWT-shaped strings replaced."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


# -- correlation context --------------------------------------------------------------------------
def current_context() -> dict[str, Any]:
    """The fields bound in this task (a copy)."""
    return dict(_CONTEXT.get())


def bind_context(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Add fields to this task's log context until `reset_context(token)`; None values are
    skipped so that callers can pass optional ids without checking them."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}}
    return _CONTEXT.set(MappingProxyType(merged))


def reset_context(token: contextvars.Token[Mapping[str, Any]]) -> None:
    """Restore the context that was current before the matching `bind_context`."""
    _CONTEXT.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind fields for the duration of a `with` block (one event, one request)."""
    token = bind_context(**fields)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def message_fields(
    message: Any, row: Mapping[str, Any] | None = None, agent: str | None = None
) -> dict[str, Any]:
    """Context fields for one consumed message (anything with topic/partition/offset) and,
    when decoded, its row's correlationId/causationId."""
    fields: dict[str, Any] = {
        "topic": getattr(message, "topic", None),
        "partition": getattr(message, "partition", None),
        "offset": getattr(message, "offset", None),
        "agent": agent,
    }
    if row is not None:
        fields["correlationId"] = row.get("correlationId")
        fields["causationId"] = row.get("causationId")
    return {k: v for k, v in fields.items() if v is not None}


# -- filters and formatters -----------------------------------------------------------------------
class ContextFilter(logging.Filter):
    """Copies the task's bound context onto each record; an explicit `extra=` field wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class RedactingFilter(logging.Filter):
    """Removes credentials from the message, its arguments, extra fields and tracebacks.

    The message is rendered here (msg % args) so that a token passed as an argument is caught;
    a traceback is rendered to text here because formatters would otherwise render it again
    from the live exception, after this filter ran.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg, record.args = redact(record.getMessage()), None
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def _iso_utc(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class JsonLogFormatter(JsonFormatter):
    """One JSON object per line: timestamp (UTC), level, logger, message, then context/extras."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={
                "asctime": "timestamp",
                "levelname": "level",
                "name": "logger",
                "exc_info": "exception",
            },
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso_utc(record)

    def format(self, record: logging.LogRecord) -> str:
        # Second line of defence for dict messages and fields the filter did not see.
        return redact(super().format(record))


class TextLogFormatter(logging.Formatter):
    """Human-readable lines for local development, with the context as key=value pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso_utc(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        ]
        if extras:
            head, sep, tail = line.partition("\n")
            line = f"{head} [{' '.join(extras)}]{sep}{tail}"
        return redact(line)


# -- configuration --------------------------------------------------------------------------------
def _level_name(level: str | int) -> str:
    name = logging.getLevelName(level) if isinstance(level, int) else level.strip().upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ValueError(f"unknown log level: {level!r}")
    return name


def _at_least(level: str, floor: str) -> str:
    return level if logging.getLevelName(level) >= logging.getLevelName(floor) else floor


def library_levels(level: str) -> dict[str, str]:
    """Default levels for library loggers at app level `level`.

    aiokafka is kept at INFO or above even in DEBUG runs (its DEBUG logs every fetch request);
    its INFO lines are the rebalance story an operator needs. aiohttp's access log carries
    request URLs and is per request, so it stays at WARNING.
    """
    return {
        "faust": level,
        "mode": level,
        "aiokafka": _at_least(level, "INFO"),
        "aiohttp": _at_least(level, "INFO"),
        "aiohttp.access": _at_least(level, "WARNING"),
        "asyncio": _at_least(level, "WARNING"),
        "rocksdict": _at_least(level, "INFO"),
    }


def logging_dict_config(
    level: str | int = "INFO",
    json: bool = True,
    *,
    stream: IO[str] | str = "ext://sys.stdout",
    levels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: one stdout handler with context and redaction
    filters; library loggers propagate to it at explicit levels. Pass it to Faust's
    `logging_config` setting so the worker keeps it when it resets logging at start-up."""
    name = _level_name(level)
    loggers = {**library_levels(name), **(levels or {})}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": ContextFilter},
            "redact": {"()": RedactingFilter},
        },
        "formatters": {"default": {"()": JsonLogFormatter if json else TextLogFormatter}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "default",
                "filters": ["context", "redact"],
            }
        },
        "loggers": {
            logger: {"level": _level_name(lvl), "handlers": [], "propagate": True}
            for logger, lvl in loggers.items()
        },
        "root": {"level": name, "handlers": ["stdout"]},
    }


def configure_logging(
    level: str | int = "INFO",
    json: bool = True,
    *,
    stream: IO[str] | None = None,
    levels: Mapping[str, str] | None = None,
) -> None:
    """Route all logging (ours, Faust's, mode's, aiokafka's) to one stdout handler, as JSON lines
    unless `json` is False. Idempotent: replaces the root handlers instead of adding more."""
    logging.root.handlers.clear()
    config = logging_dict_config(
        level, json, stream=stream if stream is not None else "ext://sys.stdout", levels=levels
    )
    logging.config.dictConfig(config)
