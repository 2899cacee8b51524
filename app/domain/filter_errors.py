"""The one error a blotter filter can raise, and the limits that bound a filter's size.

A filter arrives from an untrusted client. Whatever its shape, compiling it either succeeds or
raises :class:`FilterError` with a protocol error code and the path of the offending part, so the
WebSocket layer can answer with a typed ``error`` message instead of dropping the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import BlotterError

INVALID_FILTER = "INVALID_FILTER"
UNKNOWN_FIELD = "UNKNOWN_FIELD"

# Client text echoed into an error message is cut to this length: a 1 MB field name must not
# come back as a 1 MB error.
_ECHO_LIMIT = 60
# Deeper limits could exhaust the interpreter's recursion while parsing or evaluating.
_DEPTH_CEILING = 64


class FilterError(BlotterError):
    """A filter the server will not run: ``code`` is INVALID_FILTER or UNKNOWN_FIELD.

    ``path`` locates the problem inside the client's JSON (``filters[1].filters[0].value`` for
    the native grammar, ``price.conditions[1].filter`` for an AG Grid model; ``""`` is the root).
    """

    def __init__(self, code: str, message: str, path: str = "") -> None:
        super().__init__(f"{code} at {path or '<root>'}: {message}")
        self.code = code
        self.message = message
        self.path = path

    def to_json(self) -> dict[str, str]:
        """The fields of the protocol's ``error`` message."""
        return {"code": self.code, "message": self.message, "path": self.path}


def invalid(message: str, path: str) -> FilterError:
    return FilterError(INVALID_FILTER, message, path)


def echo(value: Any) -> str:
    """A short printable rendering of client input for error messages.

    Containers are named, not printed: repr of a deeply nested list would recurse without bound.
    """
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int) and value.bit_length() > _ECHO_LIMIT * 3:
        return "a very large integer"
    text = repr(value[: _ECHO_LIMIT + 1] if isinstance(value, str) else value)
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 3] + "..."


def child_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


@dataclass(frozen=True, slots=True)
class FilterLimits:
    """Bounds on one filter, so a subscription costs the server a predictable amount of work.

    ``max_depth`` counts nesting levels of the input (a root leaf has depth 1, a leaf inside the
    root group depth 2); ``max_nodes`` counts groups and leaves (after AG Grid translation);
    ``max_in_values`` bounds one ``in`` list or AG Grid set; ``max_string_length`` bounds every
    string value, in characters.
    """

    max_depth: int = 8
    max_nodes: int = 200
    max_in_values: int = 1000
    max_string_length: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.max_depth <= _DEPTH_CEILING:
            raise ValueError(f"max_depth must be between 1 and {_DEPTH_CEILING}")
        if min(self.max_nodes, self.max_in_values, self.max_string_length) < 1:
            raise ValueError("filter limits must be positive")


class NodeBudget:
    """Counts nodes while a filter is built, so an oversized input fails before it is all read."""

    __slots__ = ("limits", "nodes")

    def __init__(self, limits: FilterLimits) -> None:
        self.limits = limits
        self.nodes = 0

    def spend(self, path: str) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise invalid(f"filter has more than {self.limits.max_nodes} nodes", path)

    def check_depth(self, depth: int, path: str) -> None:
        if depth > self.limits.max_depth:
            raise invalid(f"filter is nested deeper than {self.limits.max_depth} levels", path)
