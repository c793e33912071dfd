"""A randomized fault run of the command path over 1,000 unlock commands: reference agents
behind a proxy that drops, duplicates, delays and holds frames in both directions and cuts
connections, a real uvicorn, Redis, the expiry task running as beat would. One run (module
scope), three behaviours counted from it (tests/live/faultrun.py says how).

The seed is printed; FAULT_SEED=<seed> replays the same mix of faults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command

from tests.live.faultrun import SKEW_MS, FaultReport, fault_run, fault_seed, fault_server_env
from tests.live.server import LiveServer, live_env
from tests.live.worker import services_required

# django_db so that pytest-django sets the test database up; the run itself is module-scoped
# and cleans up after itself.
pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture(scope="module")
def fault_report(
    django_db_setup: None,
    django_db_blocker: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FaultReport]:
    import redis
    from django.conf import settings

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError:
        (pytest.fail if services_required() else pytest.skip)(
            f"Redis is not reachable at {settings.REDIS_URL}"
        )
    seed = fault_seed()
    print(f"\nfault run seed {seed}")
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        server = LiveServer(
            tmp_path_factory.mktemp("faults") / "uvicorn.log",
            env=live_env(**fault_server_env()),
        )
        server.start()
        try:
            report = fault_run(server_ws_url=server.ws_url, seed=seed)
        finally:
            server.stop()
            # A module's worth of rows on the shared test database: emptied as a
            # transactional test would.
            call_command("flush", interactive=False, verbosity=0)
    print("\n".join(report.lines()))
    yield report


def test_the_fault_run_covers_1000_commands_and_every_kind_of_fault(fault_report) -> None:  # type: ignore[no-untyped-def]
    assert fault_report.commands >= 1000
    kinds = {kind.rsplit("_", 1)[0] for kind, n in fault_report.faults.items() if n}
    assert kinds >= {"drop", "duplicate", "delay", "late", "cut"}, fault_report.faults
    assert {k for k, n in fault_report.faults.items() if n and "_" in k} >= {
        "drop_up",
        "drop_down",
        "duplicate_up",
        "duplicate_down",
    }
    assert fault_report.executed > 0.5 * fault_report.commands


def test_no_door_opens_twice_for_one_command_under_faults(fault_report) -> None:  # type: ignore[no-untyped-def]
    assert fault_report.double_opens == 0, "\n".join(fault_report.lines())


def test_the_agents_judge_command_windows_with_the_skew_of_the_run(fault_report) -> None:  # type: ignore[no-untyped-def]
    # The server announces its skew in hello and the agents adopt it: a run whose server
    # announced the default 30 s while late opens were counted against 2 s saw "late" doors
    # up to 12 s past the window that were within the one actually in force.
    assert fault_report.skews_in_force == {SKEW_MS}


def test_no_door_opens_after_its_command_expired_under_faults(fault_report) -> None:  # type: ignore[no-untyped-def]
    assert fault_report.late_opens == 0, "\n".join(fault_report.lines())


def test_no_command_is_lost_under_faults(fault_report) -> None:  # type: ignore[no-untyped-def]
    assert fault_report.lost == 0, "\n".join(fault_report.lines())
