"""Staged rollouts against simulated cabinets that succeed, fail or stay silent. Results go
through the link's own services (command_result_record, commands_expire), as a cabinet's
frames would; the driver runs as the beat task would, one `rollout_advance` per tick."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from cabinets.models import (
    Cabinet,
    CabinetCommand,
    CabinetTag,
    CommandAction,
    CommandStatus,
    Rollout,
    RolloutEvent,
    RolloutKind,
    RolloutState,
    RolloutTarget,
    RolloutWaveState,
)
from cabinets.rollouts.driver import rollout_advance
from cabinets.rollouts.plans import wave_plan_parse, wave_sizes
from cabinets.rollouts.selectors import rollout_progress
from cabinets.rollouts.services import (
    rollout_abort,
    rollout_create,
    rollout_pause,
    rollout_resume,
    rollout_retry_failed,
    rollout_start,
)
from cabinets.rollouts.tasks import rollouts_advance_task
from cabinets.services.commands import (
    commands_expire,
)
from core.actors import Actor
from core.errors import ApplicationError, InvalidTransition
from tests.cabinets.answers import command_answer
from tests.factories import CabinetFactory, StaffUserFactory

pytestmark = pytest.mark.django_db
SKEW_S = settings.CABINET_MAX_CLOCK_SKEW_MS // 1000

Behaviour = Callable[[Cabinet], str | None]  # "succeeded", "failed" or None (silent)


@pytest.fixture
def operator() -> Actor:
    return Actor.staff(StaffUserFactory(username="ops"))


def fleet(n: int, **fields: object) -> list[Cabinet]:
    return CabinetFactory.create_batch(n, firmware_version="1.0.0", **fields)


def firmware(operator: Actor, plan: str = "5,1%,10%,50%,100%", **options: object) -> Rollout:
    rollout = rollout_create(
        name="fw 1.1.0",
        kind=RolloutKind.FIRMWARE,
        version="1.1.0",
        payload={"url": "https://fw.example/1.1.0.bin", "sha256": "ab" * 32},
        wave_plan=plan,
        actor=operator,
        **options,  # type: ignore[arg-type]
    )
    rollout_start(rollout_id=rollout.pk, actor=operator)
    return rollout


def cabinets_answer(behaviour: Behaviour) -> int:
    """Every cabinet holding an open rollout command acts on it as `behaviour` says."""
    answered = 0
    open_commands = CabinetCommand.objects.filter(
        status__in=(CommandStatus.PENDING, CommandStatus.SENT, CommandStatus.RECEIVED),
        rollout_target__isnull=False,
    ).select_related("cabinet")
    for command in open_commands:
        status = behaviour(command.cabinet)
        if status is None:
            continue
        command_answer(command, status, detail="" if status == "succeeded" else "flash write error")
        answered += 1
    return answered


def all_succeed(cabinet: Cabinet) -> str:
    return "succeeded"


def states(rollout: Rollout) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in RolloutTarget.objects.filter(rollout=rollout).values_list("state", flat=True):
        counts[state] = counts.get(state, 0) + 1
    return counts


def tick(rollout: Rollout) -> Rollout:
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    return rollout


def test_wave_plans_are_cumulative_and_end_at_the_whole_fleet() -> None:
    assert wave_plan_parse("5, 1%, 10%,50%") == ["5", "1%", "10%", "50%", "100%"]
    assert wave_sizes(["5", "1%", "10%", "50%", "100%"], 10_000) == [5, 95, 900, 4000, 5000]
    assert wave_sizes(["5", "1%", "10%", "100%"], 40) == [5, 0, 0, 35]
    assert wave_sizes(["5", "100%"], 3) == [3, 0]
    for bad in ("", "0", "ten", "150%", "-5"):
        with pytest.raises(ApplicationError):
            wave_plan_parse(bad)


def test_a_rollout_goes_wave_by_wave_to_every_cabinet_and_completes(operator: Actor) -> None:
    cabinets = fleet(40)
    rollout = firmware(operator, plan="5,25%,100%")

    rollout = tick(rollout)
    commands = CabinetCommand.objects.filter(action=CommandAction.SET_FIRMWARE)
    assert commands.count() == 5  # only the first wave goes out
    command = commands.first()
    assert command is not None
    assert command.payload == {
        "version": "1.1.0",
        "url": "https://fw.example/1.1.0.bin",
        "sha256": "ab" * 32,
    }
    assert command.expires_at - command.issued_at == timedelta(seconds=rollout.command_ttl_s)
    assert states(rollout) == {"sent": 5, "scheduled": 35}

    cabinets_answer(all_succeed)
    rollout = tick(rollout)  # wave 1 passes, wave 2 (25% = 10 cumulative: 5 more) goes out
    assert commands.count() == 10
    cabinets_answer(all_succeed)
    rollout = tick(rollout)
    assert commands.count() == 40
    cabinets_answer(all_succeed)
    rollout = tick(rollout)

    assert rollout.state == RolloutState.COMPLETED
    assert states(rollout) == {"succeeded": 40}
    progress = rollout_progress(rollout)
    assert [(p.wave.size, p.wave.state, p.done_pct) for p in progress] == [
        (5, RolloutWaveState.PASSED, 100.0),
        (5, RolloutWaveState.PASSED, 100.0),
        (30, RolloutWaveState.PASSED, 100.0),
    ]
    assert set(Cabinet.objects.values_list("firmware_version", flat=True)) == {"1.1.0"}
    assert {c.pk for c in cabinets} == set(
        RolloutTarget.objects.values_list("cabinet_id", flat=True)
    )


def test_pilot_cabinets_are_in_the_first_wave(operator: Actor) -> None:
    fleet(30)
    pilots = fleet(3)
    CabinetTag.objects.create(name="pilot").cabinets.add(*pilots)
    rollout = tick(firmware(operator, plan="3,100%"))
    first_wave = set(
        RolloutTarget.objects.filter(rollout=rollout, wave__number=1).values_list(
            "cabinet_id", flat=True
        )
    )
    assert first_wave == {c.pk for c in pilots}


def test_it_targets_cabinets_by_region_tag_and_hardware_model(operator: Actor) -> None:
    tagged = fleet(4, region="Zhejiang", hardware_model="CB-24")
    fleet(3, region="Zhejiang", hardware_model="CB-12")  # other model
    fleet(3, region="Shanghai", hardware_model="CB-24")  # other region
    other_tag = fleet(2, region="Zhejiang", hardware_model="CB-24")
    mall = CabinetTag.objects.create(name="mall")
    mall.cabinets.add(*tagged)
    CabinetTag.objects.create(name="metro").cabinets.add(*other_tag)
    fleet(1, region="Zhejiang", hardware_model="CB-24", state="retired")
    rollout = tick(
        firmware(
            operator,
            plan="100%",
            target_region="Zhejiang",
            target_hardware_model="CB-24",
            target_tag=mall,
        )
    )
    targeted = set(
        RolloutTarget.objects.filter(rollout=rollout).values_list("cabinet_id", flat=True)
    )
    assert targeted == {c.pk for c in tagged}


def test_a_wave_under_its_success_threshold_pauses_the_rollout(operator: Actor) -> None:
    fleet(20)
    rollout = tick(
        firmware(operator, plan="5,100%", success_threshold_pct=95, error_threshold_pct=50)
    )
    failing = RolloutTarget.objects.filter(rollout=rollout, state="sent").first()
    assert failing is not None

    cabinets_answer(lambda c: "failed" if c.pk == failing.cabinet_id else "succeeded")
    rollout = tick(rollout)

    assert rollout.state == RolloutState.PAUSED
    assert "80% succeeded < 95%" in rollout.state_reason
    assert states(rollout) == {"succeeded": 4, "failed": 1, "scheduled": 15}
    event = RolloutEvent.objects.get(rollout=rollout, action="auto_paused")
    assert (event.actor_kind, event.actor_label, event.wave_number) == (
        "system",
        "rollout driver",
        1,
    )
    # Paused: further ticks send nothing.
    rollout = tick(rollout)
    assert CabinetCommand.objects.count() == 5


def test_resume_after_a_threshold_pause_accepts_the_wave_and_goes_on(operator: Actor) -> None:
    fleet(20)
    rollout = tick(firmware(operator, plan="5,100%", error_threshold_pct=50))
    failing = RolloutTarget.objects.filter(rollout=rollout, state="sent").first()
    assert failing is not None
    cabinets_answer(lambda c: "failed" if c.pk == failing.cabinet_id else "succeeded")
    rollout = tick(rollout)
    assert rollout.state == RolloutState.PAUSED

    rollout_resume(rollout_id=rollout.pk, actor=operator)
    rollout = tick(rollout)

    assert rollout.state == RolloutState.RUNNING
    assert CabinetCommand.objects.count() == 20
    accepted = RolloutEvent.objects.get(rollout=rollout, action="wave_accepted")
    assert (accepted.actor_label, accepted.wave_number) == ("ops", 1)
    cabinets_answer(all_succeed)
    assert tick(rollout).state == RolloutState.COMPLETED


def test_too_many_errors_abort_the_rollout_and_nothing_unsent_goes_out(operator: Actor) -> None:
    fleet(60)
    rollout = tick(firmware(operator, plan="5,50%,100%", error_threshold_pct=20, min_sample=10))
    cabinets_answer(all_succeed)
    rollout = tick(rollout)  # wave 2: 25 commands out
    wave2 = list(RolloutTarget.objects.filter(rollout=rollout, wave__number=2).order_by("id"))
    assert len(wave2) == 25 and all(t.state == "sent" for t in wave2)
    # The first ten cabinets of wave 2 answer, four of them with a failure; the rest are slow.
    answering = {t.cabinet_id for t in wave2[:10]}
    failing = {t.cabinet_id for t in wave2[:4]}
    cabinets_answer(
        lambda c: None if c.pk not in answering else ("failed" if c.pk in failing else "succeeded")
    )
    rollout = tick(rollout)

    assert rollout.state == RolloutState.ABORTED
    assert "40% errors > 20%" in rollout.state_reason
    assert states(rollout) == {"succeeded": 11, "failed": 4, "cancelled": 45}
    # The commands the slow cabinets had not picked up are withdrawn.
    withdrawn = CabinetCommand.objects.filter(rollout_target__state="cancelled")
    assert withdrawn.count() == 15
    assert set(withdrawn.values_list("status", flat=True)) == {CommandStatus.EXPIRED}
    assert RolloutEvent.objects.filter(rollout=rollout, action="auto_aborted").exists()
    before = CabinetCommand.objects.count()
    assert tick(rollout).state == RolloutState.ABORTED
    assert CabinetCommand.objects.count() == before
    with pytest.raises(InvalidTransition):
        rollout_resume(rollout_id=rollout.pk, actor=operator)


def test_errors_below_the_minimum_sample_do_not_abort(operator: Actor) -> None:
    fleet(30)
    rollout = tick(firmware(operator, plan="20,100%", error_threshold_pct=10, min_sample=10))
    first = RolloutTarget.objects.filter(rollout=rollout, state="sent").first()
    assert first is not None
    cabinets_answer(lambda c: "failed" if c.pk == first.cabinet_id else None)
    assert tick(rollout).state == RolloutState.RUNNING


def test_silent_cabinets_time_out_and_count_as_errors(operator: Actor) -> None:
    cabinets = fleet(10)
    silent = {cabinets[0].pk, cabinets[1].pk}
    rollout = tick(
        firmware(operator, plan="100%", command_ttl_s=600, error_threshold_pct=50, min_sample=10)
    )
    cabinets_answer(lambda c: None if c.pk in silent else "succeeded")
    rollout = tick(rollout)
    assert rollout.state == RolloutState.RUNNING  # still waiting for the silent two

    # Expired once the cabinet, whose clock may be up to the allowed skew behind, refuses it.
    commands_expire(now=timezone.now() + timedelta(seconds=601 + SKEW_S))
    rollout = tick(rollout)

    assert states(rollout) == {"succeeded": 8, "timed_out": 2}
    assert rollout.state == RolloutState.PAUSED  # 80% < 95%
    timed_out = RolloutTarget.objects.filter(state="timed_out").values_list("cabinet_id", flat=True)
    assert set(timed_out) == silent


def test_cabinets_already_at_the_version_are_skipped_without_a_command(operator: Actor) -> None:
    fleet(6)
    current = fleet(4)
    Cabinet.objects.filter(pk__in=[c.pk for c in current]).update(firmware_version="1.1.0")
    rollout = tick(firmware(operator, plan="100%"))

    assert states(rollout) == {"sent": 6, "skipped": 4}
    assert not CabinetCommand.objects.filter(cabinet__in=current).exists()
    cabinets_answer(all_succeed)
    rollout = tick(rollout)
    assert rollout.state == RolloutState.COMPLETED  # skipped cabinets are not failures


def test_a_config_rollout_sends_the_integer_config_version(operator: Actor) -> None:
    fleet(3, config_version="6")
    rollout = rollout_create(
        name="cfg",
        kind=RolloutKind.CONFIG,
        version="7",
        payload={"beep": False},
        wave_plan="100%",
        actor=operator,
    )
    rollout_start(rollout_id=rollout.pk, actor=operator)
    tick(rollout)
    command = CabinetCommand.objects.get(cabinet__in=Cabinet.objects.all()[:1])
    assert (command.action, command.payload) == ("set_config", {"beep": False, "config_version": 7})
    with pytest.raises(ApplicationError):
        rollout_create(name="bad", kind=RolloutKind.CONFIG, version="v7", actor=operator)


def test_retry_failed_sends_the_failed_cabinets_again(operator: Actor) -> None:
    cabinets = fleet(10)
    flaky = cabinets[0].pk
    rollout = tick(firmware(operator, plan="100%", error_threshold_pct=50))
    cabinets_answer(lambda c: "failed" if c.pk == flaky else "succeeded")
    rollout = tick(rollout)
    assert rollout.state == RolloutState.PAUSED

    assert rollout_retry_failed(rollout_id=rollout.pk, actor=operator) == 1
    rollout_resume(rollout_id=rollout.pk, actor=operator)
    rollout = tick(rollout)
    target = RolloutTarget.objects.get(cabinet_id=flaky)
    assert (target.state, target.attempts) == ("sent", 2)
    cabinets_answer(all_succeed)
    assert tick(rollout).state == RolloutState.COMPLETED
    assert CabinetCommand.objects.filter(cabinet_id=flaky).count() == 2


def test_an_operator_pause_stops_new_commands_and_results_still_count(operator: Actor) -> None:
    fleet(20)
    rollout = tick(firmware(operator, plan="5,100%"))
    rollout_pause(rollout_id=rollout.pk, actor=operator, reason="weekend")
    cabinets_answer(all_succeed)  # results of commands already out still arrive
    rollout = tick(rollout)
    assert rollout.state == RolloutState.PAUSED
    assert states(rollout) == {"succeeded": 5, "scheduled": 15}
    assert CabinetCommand.objects.count() == 5

    rollout_resume(rollout_id=rollout.pk, actor=operator)
    tick(rollout)
    assert CabinetCommand.objects.count() == 20


def test_a_result_moves_its_target_as_it_is_recorded(operator: Actor) -> None:
    fleet(2)
    rollout = tick(firmware(operator, plan="100%"))
    cabinets_answer(all_succeed)
    # no tick: recording the result already moved the targets
    assert states(rollout) == {"succeeded": 2}


def test_operator_actions_are_audited_with_who_and_when(operator: Actor) -> None:
    fleet(3)
    rollout = firmware(operator, plan="100%")
    rollout_pause(rollout_id=rollout.pk, actor=operator, reason="check")
    rollout_resume(rollout_id=rollout.pk, actor=operator)
    rollout_abort(rollout_id=rollout.pk, actor=operator, reason="wrong build")

    events = list(
        RolloutEvent.objects.filter(rollout=rollout, actor_label="ops").order_by("at", "id")
    )
    assert [(e.action, e.from_state, e.to_state) for e in events] == [
        ("created", "", "draft"),
        ("started", "draft", "running"),
        ("paused", "running", "paused"),
        ("resumed", "paused", "running"),
        ("aborted", "running", "aborted"),
    ]
    assert all(e.actor_user_id == operator.user.pk and e.at for e in events)  # type: ignore[union-attr]
    assert events[-1].detail == "wrong build"
    rollout.refresh_from_db()
    assert rollout.finished_at is not None
    # aborted before the worker planned it: no cabinet gets anything
    tick(rollout)
    assert not CabinetCommand.objects.exists()


def test_starting_queues_the_driver_after_commit(
    operator: Actor,
    django_capture_on_commit_callbacks,  # type: ignore[no-untyped-def]
) -> None:
    fleet(3)
    rollout = rollout_create(
        name="fw", kind=RolloutKind.FIRMWARE, version="2.0", wave_plan="100%", actor=operator
    )
    with django_capture_on_commit_callbacks(execute=True):
        rollout_start(rollout_id=rollout.pk, actor=operator)
    # the eager task ran the first step in the "worker"
    assert CabinetCommand.objects.count() == 3
    assert RolloutTarget.objects.filter(state="sent").count() == 3


def test_the_beat_task_advances_every_running_rollout(operator: Actor) -> None:
    fleet(4)
    first = firmware(operator, plan="100%")
    second = firmware(operator, plan="100%")
    assert rollouts_advance_task() == 2
    assert states(first) == {"sent": 4}
    assert states(second) == {"sent": 4}


def test_advancing_is_a_bounded_number_of_queries(
    operator: Actor,
    settings,
    django_assert_max_num_queries,  # type: ignore[no-untyped-def]
) -> None:
    settings.ROLLOUT_SEND_BATCH = 0  # count the bookkeeping, not the per-command inserts
    fleet(1500)
    rollout = firmware(operator, plan="100%")
    with django_assert_max_num_queries(40):
        rollout_advance(rollout_id=rollout.pk)
    assert RolloutTarget.objects.filter(rollout=rollout).count() == 1500
