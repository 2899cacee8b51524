"""Socket-free harness for the blotter stream tests (no tests here): a replica, a fan-out, sessions,
and a model client that applies the frames a session would send and checks the protocol's
promises as it goes."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from app.metadata import BLOTTER_OBJECT_TYPES
from app.rows import dumps, json_row
from web.blotter.config import BlotterConfig
from web.blotter.principal import ANONYMOUS_ALL_ACCOUNTS, Principal
from web.blotter.replica import Replica
from web.blotter.session import Session
from web.blotter.subscriptions import FanOut


def order_row(
    key: str,
    sequence: int,
    account: str = "A",
    status: str = "NEW",
    qty: str = "100",
    symbol: str = "AAPL",
) -> dict[str, Any]:
    return {
        "orderId": key,
        "sequence": sequence,
        "account": account,
        "symbol": symbol,
        "status": status,
        "orderQty": Decimal(qty),
        "price": None,
    }


@dataclass
class ModelView:
    """The client's view of one subscription, built only from frames."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_sequence: dict[str, int] = field(default_factory=dict)
    received: int = 0
    snapshot_ended: bool = False
    errors: list[str] = field(default_factory=list)


class ModelClient:
    """Applies frames; asserts ordering promises (snapshot before changes, rising sequences)."""

    def __init__(self) -> None:
        self.views: dict[str, ModelView] = {}
        self.errors: list[dict[str, Any]] = []
        self.control: list[dict[str, Any]] = []

    def view(self, sub_id: str) -> ModelView:
        return self.views.setdefault(sub_id, ModelView())

    def apply(self, frames: list[bytes]) -> None:
        for frame in frames:
            message = orjson.loads(frame)
            kind = message["type"]
            if kind == "error":
                self.errors.append(message)
                if "id" in message:
                    self.view(message["id"]).errors.append(message["code"])
                continue
            if kind in ("snapshot", "changes"):
                view = self.view(message["id"])
                entries = message["rows"] if kind == "snapshot" else message["changes"]
                assert entries, "empty row batch"
                assert (kind == "changes") == view.snapshot_ended, f"{kind} out of order"
                view.received += len(entries)
                for entry in entries:
                    self._entry(view, entry)
            elif kind == "snapshotEnd":
                view = self.view(message["id"])
                assert not view.snapshot_ended
                view.snapshot_ended = True
            else:
                if kind == "subscribed":  # a new subscription (maybe reusing an id) starts empty
                    self.views[message["id"]] = ModelView()
                self.control.append(message)

    @staticmethod
    def _entry(view: ModelView, entry: dict[str, Any]) -> None:
        key, sequence = entry["key"], entry["sequence"]
        held = view.last_sequence.get(key)
        if entry["op"] == "upsert":
            assert held is None or sequence > held, f"{key}: sequence {sequence} after {held}"
            view.rows[key] = entry["row"]
        else:
            # a deletion carries the deleted version's own sequence
            assert held is not None and sequence >= held, f"{key}: remove {sequence} < {held}"
            assert entry["op"] == "remove"
            assert key in view.rows, f"remove of {key}, which the client does not hold"
            del view.rows[key]
        view.last_sequence[key] = sequence


class Harness:
    """One replica and fan-out; sessions created on demand."""

    def __init__(self, config: BlotterConfig | None = None, ready: bool = True) -> None:
        self.config = config or BlotterConfig()
        self.replica = Replica(tuple(BLOTTER_OBJECT_TYPES))
        self.fanout = FanOut(self.replica)
        if ready:
            self.replica.mark_ready()

    def session(self, principal: Principal = ANONYMOUS_ALL_ACCOUNTS) -> Session:
        return Session(self.fanout, principal, self.config)

    def order(self, key: str, sequence: int, **fields: Any) -> None:
        self.replica.apply("Order", key, sequence, order_row(key, sequence, **fields))


def send(session: Session, message: dict[str, Any]) -> None:
    session.handle_text(orjson.dumps(message))


def drain(session: Session, client: ModelClient, max_rounds: int = 10_000) -> None:
    """Collect until the session has nothing left to send."""
    for _ in range(max_rounds):
        frames = session.collect()
        if not frames:
            return
        client.apply(frames)
    raise AssertionError("session never ran dry")


def rendered(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the wire renders it (the REST encoding: decimals as strings)."""
    return orjson.loads(dumps(json_row(row)))
