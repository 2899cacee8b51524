"""The set of trade ids already applied to a position: the idempotency record.

It must hold every id the position ever applied (a resend can come at any time), and it travels
in the same stored state as the lots so that "applied" and "position changed" are one write. A
position with 10,000 trades would pay ~0.6 ms to rebuild a hash set on every load, so the ids are
kept as the stored newline-joined text, answered by a substring search (~40 us at 10,000 ids) until
the same object has been asked often enough that building the set pays off. Ids appended since the
last encode sit in a short tail, so encoding is one concatenation, not a re-join of all ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

# Text searches tolerated on one object before building the hash index. A position reused for
# more trades than this (an in-memory cache, a replay) gets O(1) lookups from then on.
_SEARCHES_BEFORE_INDEX = 8


def _text_contains(text: str, trade_id: str) -> bool:
    """Whole-line match of trade_id in newline-joined text (ids contain no newline)."""
    size = len(trade_id)
    start = text.find(trade_id)
    while start >= 0:
        end = start + size
        if (start == 0 or text[start - 1] == "\n") and (end == len(text) or text[end] == "\n"):
            return True
        start = text.find(trade_id, start + 1)
    return False


class AppliedTradeIds:
    """Insertion-ordered set of trade ids with a cheap load/store path."""

    __slots__ = ("_count", "_index", "_searches", "_tail", "_text")

    def __init__(self, trade_ids: Iterable[str] = ()) -> None:
        self._text = ""
        self._tail: list[str] = []
        self._index: dict[str, None] | None = {}
        self._count: int | None = 0  # None until first asked for, after a decode
        self._searches = 0
        for trade_id in trade_ids:
            if trade_id not in self:
                self.add(trade_id)

    def __len__(self) -> int:
        if self._count is None:
            self._flush()
            self._count = self._text.count("\n") + 1 if self._text else 0
        return self._count

    def __contains__(self, trade_id: object) -> bool:
        index = self._index
        if index is not None:
            return trade_id in index
        if not isinstance(trade_id, str):
            return False
        self._searches += 1
        if self._searches > _SEARCHES_BEFORE_INDEX:
            self._build_index()
            return trade_id in self._index  # type: ignore[operator]
        return trade_id in self._tail or _text_contains(self._text, trade_id)

    def add(self, trade_id: str) -> None:
        """Record an id; the caller has checked it is not present (apply does, for speed)."""
        self._tail.append(trade_id)
        if self._index is not None:
            self._index[trade_id] = None
        if self._count is not None:
            self._count += 1

    def __iter__(self) -> Iterator[str]:
        self._flush()
        return iter(self._text.split("\n") if self._text else ())

    def _build_index(self) -> None:
        self._flush()
        self._index = dict.fromkeys(self._text.split("\n")) if self._text else {}

    def _flush(self) -> None:
        if self._tail:
            joined = "\n".join(self._tail)
            self._text = f"{self._text}\n{joined}" if self._text else joined
            self._tail.clear()

    def encode(self) -> str:
        self._flush()
        return self._text

    @classmethod
    def decode(cls, text: str) -> AppliedTradeIds:
        ids = cls()
        ids._text = text
        ids._index = None
        ids._count = None
        return ids

    def copy(self) -> AppliedTradeIds:
        return AppliedTradeIds.decode(self.encode())
