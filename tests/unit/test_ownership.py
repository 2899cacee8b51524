"""The ownership fence: a claim needs the partition assigned and no rebalance in progress."""

from __future__ import annotations

import pytest

from app import ownership
from app.errors import PartitionRevoked
from tests.agents.test_delivery import FakeApp


def test_no_claim_is_granted_while_a_rebalance_is_in_progress() -> None:
    app = FakeApp()
    app.rebalancing = True
    with pytest.raises(PartitionRevoked), ownership.claimed(app, ("t", 0)):
        pass


def test_no_claim_is_granted_for_a_partition_assigned_elsewhere() -> None:
    app = FakeApp()
    with pytest.raises(PartitionRevoked), ownership.claimed(app, ("t", 1)):
        pass


def test_a_new_assignment_alone_ends_a_claim() -> None:
    app = FakeApp()
    with ownership.claimed(app, ("t", 0)):
        ownership.ensure_owned()
        app.consumer_generation_id += 1  # assigned anew, whatever the revocation count says
        with pytest.raises(PartitionRevoked):
            ownership.ensure_owned()
    ownership.ensure_owned()  # outside any claim: not fenced


async def test_waiting_for_a_rebalance_to_end_rechecks_without_a_wake_up() -> None:
    import asyncio

    app = FakeApp()
    app.rebalancing = True
    waiting = asyncio.create_task(ownership.settled(app, recheck_s=0.01))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    app.rebalancing = False  # ended without `on_rebalance_end` being called
    await asyncio.wait_for(waiting, 1)
