"""The short chaos run (issue 11, items 1-4): one run of a few thousand events with a few of
every fault, then one test per pass figure so a failure names the broken guarantee.

The long version is `python -m tests.reliability.chaos --long` (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from app.broker import EmbeddedBroker
from tests.reliability.chaos import KILL9_RESUME_TARGET_S, SHORT, ChaosResult, run_chaos
from tests.reliability.faults import RESUME_TIMEOUT_S

pytestmark = [pytest.mark.integration, pytest.mark.timeout(720)]


@pytest.fixture(scope="module")
def chaos(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChaosResult]:
    run_dir = tmp_path_factory.mktemp("chaos")
    result = asyncio.run(run_chaos(SHORT, run_dir, broker_port=broker.port))
    print(f"\n{result.figures_text()}\nlogs: {run_dir}")
    yield result


def _figures(chaos: ChaosResult) -> str:
    return chaos.figures_text()


def test_stream_ran_and_system_went_quiet(chaos: ChaosResult) -> None:
    assert chaos.produced == SHORT.events, chaos.problems
    assert chaos.quiet, _figures(chaos)
    assert chaos.report is not None, _figures(chaos)
    assert chaos.report.messages == SHORT.events  # the verifier read back every input
    assert chaos.report.trades > 100 and chaos.report.positions > 10


def test_nothing_lost(chaos: ChaosResult) -> None:
    assert chaos.report is not None and chaos.report.lost == 0, _figures(chaos)


def test_nothing_double_applied(chaos: ChaosResult) -> None:
    assert chaos.report is not None and chaos.report.double_applied == 0, _figures(chaos)


def test_no_stale_overwrite(chaos: ChaosResult) -> None:
    assert chaos.report is not None and chaos.report.stale_overwrite == 0, _figures(chaos)


def test_positions_equal_the_reference_replay(chaos: ChaosResult) -> None:
    assert chaos.report is not None and chaos.report.mismatched_positions == 0, _figures(chaos)


def test_dead_letters_are_exactly_the_injected_poison(chaos: ChaosResult) -> None:
    report = chaos.report
    assert report is not None
    assert report.poison_injected == SHORT.poison
    assert report.dlq == report.poison_injected, _figures(chaos)
    assert report.dlq_unexpected == 0, _figures(chaos)
    assert report.poison_applied == 0, _figures(chaos)


@pytest.mark.parametrize(
    "kind",
    ["kill-9", "sigterm", "scale-up", "scale-down", "wipe-rocksdb", "registry-outage"],
)
def test_every_partition_fetches_again_after_the_fault(chaos: ChaosResult, kind: str) -> None:
    of_kind = [f for f in chaos.faults if f.kind == kind]
    assert of_kind, f"no {kind} fault ran:\n{_figures(chaos)}"
    for fault in of_kind:
        assert fault.ok, f"{fault.line()}\n{_figures(chaos)}"
        assert fault.resume_s is not None and fault.resume_s <= RESUME_TIMEOUT_S


def test_kill9_resume_time_within_target(chaos: ChaosResult) -> None:
    resumes = chaos.kill9_resume()
    assert len(resumes) == SHORT.kills, _figures(chaos)
    assert max(resumes) <= KILL9_RESUME_TARGET_S, _figures(chaos)


def test_blotter_clients_under_the_faults_see_the_expected_sets(chaos: ChaosResult) -> None:
    """A client stalled without credits and one reconnecting in a loop, all run long."""
    assert len(chaos.background) == 2, _figures(chaos)
    assert chaos.background_problems() == [], _figures(chaos)
