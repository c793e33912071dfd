"""The ASGI process's garbage-collection policy (cabinets/gc_policy.py): what lives a while is
frozen out of every collection; a garbage cycle among frozen objects is collected at the thaw."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from collections.abc import Callable

import pytest

from cabinets.gc_policy import GcPolicy


class Node:
    """A container in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


async def _until(condition: Callable[[], bool], deadline_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        if loop.time() > end:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


@pytest.fixture
def thawed_after():  # type: ignore[no-untyped-def]
    # The test process's own state is put back: frozen after the test if it was before
    # (config.asgi freezes at import, and a test checks that).
    was_frozen = gc.get_freeze_count() > 0
    yield
    gc.unfreeze()
    gc.collect()
    if was_frozen or "config.asgi" in sys.modules:
        gc.freeze()


def test_what_lives_past_a_freeze_is_skipped_by_collections_and_its_cycles_wait_for_the_thaw(
    settings, thawed_after
) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_GC_FREEZE_S = 0.05
    settings.CABINET_GC_THAW_S = 0.6
    policy = GcPolicy()

    async def scenario() -> None:
        policy.watch()
        policy.watch()  # a second handshake on the same loop starts nothing more
        cycle = Node()
        dead = weakref.ref(cycle)
        await _until(lambda: policy.freezes >= 2)
        assert gc.is_tracked(cycle)
        frozen = gc.get_freeze_count()
        assert frozen > 0
        del cycle
        # Frozen: a full collection does not look at it.
        gc.collect()
        assert dead() is not None
        # The thaw: one full collection over everything, then frozen again.
        await _until(lambda: policy.thaws >= 1)
        assert dead() is None
        assert policy.last_thaw_collected >= 1
        await _until(lambda: gc.get_freeze_count() > 0)

    asyncio.run(scenario())


def test_with_both_periods_zero_nothing_is_frozen_or_thawed(settings, thawed_after) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_GC_FREEZE_S = 0
    settings.CABINET_GC_THAW_S = 0
    policy = GcPolicy()
    gc.unfreeze()

    async def scenario() -> None:
        policy.watch()
        cycle = Node()
        dead = weakref.ref(cycle)
        await asyncio.sleep(0.3)
        del cycle
        gc.collect()
        assert dead() is None

    asyncio.run(scenario())
    assert (policy.freezes, policy.thaws, gc.get_freeze_count()) == (0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_the_first_handshake_of_a_loop_starts_the_processs_policy_at_the_admission_gate(
    settings, monkeypatch, thawed_after
) -> None:  # type: ignore[no-untyped-def]
    from cabinets import admission
    from cabinets.services.credentials import cabinet_credential_issue
    from core.actors import Actor
    from tests.cabinets.link import open_link
    from tests.factories import CabinetFactory

    settings.CABINET_GC_FREEZE_S = 0.05
    settings.CABINET_GC_THAW_S = 0
    policy = GcPolicy()
    monkeypatch.setattr(admission, "gc_policy", policy)
    issued = cabinet_credential_issue(
        cabinet=CabinetFactory(serial="SH-GC-1"), actor=Actor.system("test")
    )

    async def scenario() -> None:
        assert policy.freezes == 0
        comm, _ = await open_link(issued.credential)
        await _until(lambda: policy.freezes >= 2)
        await comm.disconnect()

    asyncio.run(scenario())
