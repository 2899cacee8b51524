"""The blotter WebSocket protocol: client messages in, server frames out (docs/asyncapi.yaml).

Parsing never raises anything but :class:`ProtocolError`, whose code goes back to the client in
an ``error`` message: a malformed message costs the client one error, not its connection.

Server frames are built as bytes. Row entries are serialized once per change (see
:mod:`web.blotter.replica`) and spliced into each receiver's frame, so a change fanned out to a
thousand subscriptions is serialized once, not a thousand times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

PROTOCOL_VERSION = 1

# -- error codes ----------------------------------------------------------------------------------
BAD_MESSAGE = "BAD_MESSAGE"
INVALID_FILTER = "INVALID_FILTER"
UNKNOWN_FIELD = "UNKNOWN_FIELD"
UNKNOWN_OBJECT_TYPE = "UNKNOWN_OBJECT_TYPE"
DUPLICATE_SUBSCRIPTION = "DUPLICATE_SUBSCRIPTION"
UNKNOWN_SUBSCRIPTION = "UNKNOWN_SUBSCRIPTION"
TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
SLOW_CONSUMER = "SLOW_CONSUMER"
UNAUTHORIZED = "UNAUTHORIZED"
RATE_LIMITED = "RATE_LIMITED"
INTERNAL_ERROR = "INTERNAL_ERROR"

ERROR_CODES = (
    BAD_MESSAGE,
    INVALID_FILTER,
    UNKNOWN_FIELD,
    UNKNOWN_OBJECT_TYPE,
    DUPLICATE_SUBSCRIPTION,
    UNKNOWN_SUBSCRIPTION,
    TOO_MANY_SUBSCRIPTIONS,
    SLOW_CONSUMER,
    UNAUTHORIZED,
    RATE_LIMITED,
    INTERNAL_ERROR,
)

# -- close codes ----------------------------------------------------------------------------------
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the worker is shutting down: reconnect (to any worker)
CLOSE_MESSAGE_TOO_BIG = 1009  # a client message exceeded the maximum size
CLOSE_INTERNAL_ERROR = 1011
CLOSE_UNAUTHORIZED = 1008  # policy violation: the token expired mid-session
CLOSE_SLOW_CONNECTION = 4008  # the client stopped reading (the TCP connection is reset)
CLOSE_RATE_LIMITED = 4029  # reserved for per-user limits

# -- row entry operations -------------------------------------------------------------------------
OP_UPSERT = "upsert"
OP_REMOVE = "remove"
REASON_NO_LONGER_MATCHES = "NO_LONGER_MATCHES"
REASON_DELETED = "DELETED"

MAX_ID_LENGTH = 128
_MAX_INT = 2**53 - 1  # what every JSON client (JavaScript included) reads exactly


class ProtocolError(Exception):
    """A client message the server will not act on; becomes one ``error`` message."""

    def __init__(self, code: str, message: str, sub_id: str | None = None, path: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.sub_id = sub_id
        self.path = path


@dataclass(frozen=True, slots=True)
class Subscribe:
    sub_id: str
    object_type: str
    filter: Any
    credits: int | None


@dataclass(frozen=True, slots=True)
class Request:
    sub_id: str
    n: int


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    sub_id: str


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: Any


ClientMessage = Subscribe | Request | Unsubscribe | Ping


def parse_client_message(data: str | bytes) -> ClientMessage:
    """One client text frame -> a typed message; ProtocolError for anything malformed."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(BAD_MESSAGE, f"not valid JSON: {exc.msg}") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_MESSAGE, "a message must be a JSON object")
    kind = message.get("type")
    if kind == "ping":
        nonce = message.get("id")
        if nonce is not None and not _small_scalar(nonce):
            raise ProtocolError(BAD_MESSAGE, "ping id must be a short string or a number")
        return Ping(nonce)
    if kind not in ("subscribe", "request", "unsubscribe"):
        if not isinstance(kind, str):
            raise ProtocolError(BAD_MESSAGE, "missing or non-string 'type'")
        raise ProtocolError(
            BAD_MESSAGE,
            f"unknown message type {_clip(kind)!r}; one of subscribe, request, unsubscribe, ping",
        )
    sub_id = _sub_id(message)
    if kind == "subscribe":
        object_type = message.get("objectType")
        if not isinstance(object_type, str) or not object_type:
            raise ProtocolError(BAD_MESSAGE, "subscribe needs a string 'objectType'", sub_id)
        raw_filter = message.get("filter")
        if raw_filter is not None and not isinstance(raw_filter, dict):
            raise ProtocolError(
                INVALID_FILTER, "'filter' must be a JSON object or null", sub_id, "filter"
            )
        credits = message.get("credits")
        if credits is not None:
            credits = _count(credits, "credits", sub_id, minimum=0)
        return Subscribe(sub_id, object_type, raw_filter, credits)
    if kind == "request":
        if "n" not in message:
            raise ProtocolError(BAD_MESSAGE, "request needs 'n', the credits to add", sub_id)
        return Request(sub_id, _count(message["n"], "n", sub_id, minimum=1))
    return Unsubscribe(sub_id)


def _sub_id(message: dict[str, Any]) -> str:
    sub_id = message.get("id")
    if not isinstance(sub_id, str) or not sub_id:
        raise ProtocolError(BAD_MESSAGE, "'id' (the subscription id) must be a non-empty string")
    if len(sub_id) > MAX_ID_LENGTH:
        raise ProtocolError(BAD_MESSAGE, f"'id' is longer than {MAX_ID_LENGTH} characters")
    return sub_id


def _count(value: Any, name: str, sub_id: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(BAD_MESSAGE, f"'{name}' must be an integer", sub_id)
    if not minimum <= value <= _MAX_INT:
        raise ProtocolError(BAD_MESSAGE, f"'{name}' must be between {minimum} and 2^53-1", sub_id)
    return value


def _small_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_ID_LENGTH
    return isinstance(value, int | float) and not isinstance(value, bool)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- server frames --------------------------------------------------------------------------------
def encode_id(sub_id: str) -> bytes:
    """The JSON form of a subscription id, computed once per subscription."""
    return orjson.dumps(sub_id)


def welcome_frame(blotter_id: str, ready: bool, limits: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "type": "welcome",
            "protocol": PROTOCOL_VERSION,
            "blotterId": blotter_id,
            "ready": ready,
            "limits": limits,
        }
    )


def subscribed_frame(sub_id: str, object_type: str, credits: int, spec: Any) -> bytes:
    return orjson.dumps(
        {
            "type": "subscribed",
            "id": sub_id,
            "objectType": object_type,
            "credits": credits,
            "filter": spec,
        }
    )


def unsubscribed_frame(sub_id: str) -> bytes:
    return orjson.dumps({"type": "unsubscribed", "id": sub_id})


def error_frame(code: str, message: str, sub_id: str | None = None, path: str = "") -> bytes:
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if sub_id is not None:
        body["id"] = sub_id
    if path:
        body["path"] = path
    return orjson.dumps(body)


def pong_frame(nonce: Any) -> bytes:
    body: dict[str, Any] = {"type": "pong", "time": int(time.time() * 1000)}
    if nonce is not None:
        body["id"] = nonce
    return orjson.dumps(body)


def snapshot_frame(id_json: bytes, entries: list[bytes]) -> bytes:
    return b'{"type":"snapshot","id":' + id_json + b',"rows":[' + b",".join(entries) + b"]}"


def snapshot_end_frame(id_json: bytes, rows: int) -> bytes:
    return b'{"type":"snapshotEnd","id":' + id_json + b',"rows":' + str(rows).encode() + b"}"


def changes_frame(id_json: bytes, entries: list[bytes]) -> bytes:
    return b'{"type":"changes","id":' + id_json + b',"changes":[' + b",".join(entries) + b"]}"
