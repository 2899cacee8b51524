"""The checks of the chaos blotter clients catch what they are meant to catch."""

from __future__ import annotations

import asyncio

from tests.reliability.blotter_faults import converge, expected_sequences, view_problems
from tests.reliability.reference import Expected, ObjectVersion
from web.blotter.client import View


def expected_of(**objects: tuple[str, int]) -> Expected:
    expected = Expected()
    for object_id, (kind, sequence) in objects.items():
        expected.objects[(kind, object_id)] = ObjectVersion(sequence, f"E-{object_id}")
    return expected


def view_with(**sequences: int) -> View:
    view = View("s", "Order", window=10, auto_credit=False, granted=10)
    for key, sequence in sequences.items():
        view.apply({"key": key, "sequence": sequence, "row": {}})
        view.received += 1
    return view


def test_expected_sequences_are_those_of_one_object_type() -> None:
    expected = expected_of(O1=("Order", 3), O2=("Order", 1), X1=("Execution", 2))
    assert expected_sequences(expected, "Order") == {"O1": 3, "O2": 1}


async def test_converge_names_missing_extra_and_behind_rows() -> None:
    want = {"O1": 3, "O2": 1, "O3": 2}
    assert await converge(view_with(O1=3, O2=1, O3=2), want, 1) is None
    differs = await converge(view_with(O1=2, O2=1, O4=1), want, 0.3)
    assert differs is not None
    assert "missing 1 ['O3']" in differs and "extra 1 ['O4']" in differs
    assert "('O1', 2, 3)" in differs


async def test_a_closed_view_stops_the_wait_at_once() -> None:
    view = view_with(O1=1)
    view.closed.set()
    differs = await asyncio.wait_for(converge(view, {"O1": 2}, 30), 5)
    assert differs is not None


def test_view_problems_flag_regressions_errors_and_rows_beyond_credits() -> None:
    clean = view_with(O1=1, O2=1)
    assert view_problems("v", clean) == []
    clean.errors.append({"code": "SLOW_CONSUMER"})  # the server's bound, allowed
    assert view_problems("v", clean) == []

    bad = view_with(O1=2)
    bad.apply({"key": "O1", "sequence": 1, "row": {}})  # a lower sequence after a higher one
    bad.errors.append({"code": "INTERNAL_ERROR"})
    bad.received = bad.granted + 1
    problems = view_problems("v", bad)
    assert len(problems) == 3
    assert "1 regressions" in problems[0] and "INTERNAL_ERROR" in problems[1]
    assert "11 rows for 10 credits" in problems[2]
