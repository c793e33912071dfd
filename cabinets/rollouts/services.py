"""Operator actions on rollouts: create, start, pause, resume, abort, retry the failures. They
only change state and write an audit row; the worker does the work (cabinets.rollouts.driver)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from cabinets.models import (
    CabinetTag,
    Rollout,
    RolloutKind,
    RolloutState,
    RolloutTarget,
    RolloutTargetState,
    RolloutWave,
    RolloutWaveState,
)
from cabinets.rollouts.plans import DEFAULT_WAVE_PLAN, wave_plan_parse
from cabinets.rollouts.selectors import rollout_current_wave, wave_counts
from cabinets.rollouts.tasks import rollout_advance_task
from cabinets.rollouts.transitions import (
    rollout_event_record,
    rollout_lock,
    rollout_move,
    rollout_stop_unsent,
    target_sources,
    wave_pass,
)
from core.actors import Actor
from core.errors import ApplicationError


def _advance_after_commit(rollout_id: int) -> None:
    # The worker must see the committed state change, so the task is queued after commit.
    rollout_advance_task.delay_on_commit(rollout_id)


def rollout_create(
    *,
    name: str,
    kind: str,
    version: str,
    actor: Actor,
    payload: dict[str, Any] | None = None,
    target_region: str = "",
    target_tag: CabinetTag | None = None,
    target_hardware_model: str = "",
    wave_plan: str | Iterable[str] = DEFAULT_WAVE_PLAN,
    success_threshold_pct: int = 95,
    error_threshold_pct: int = 20,
    min_sample: int = 5,
    command_ttl_s: int | None = None,
) -> Rollout:
    version = version.strip()
    if kind not in RolloutKind.values:
        raise ApplicationError(
            gettext("Unknown rollout kind %(kind)r.") % {"kind": kind}, code="invalid_kind"
        )
    if kind == RolloutKind.CONFIG and not version.isdigit():
        # The protocol's set_config carries an integer config_version.
        raise ApplicationError(
            gettext("A config version is a non-negative integer."), code="invalid_version"
        )
    if not version:
        raise ApplicationError(gettext("A rollout needs a version."), code="invalid_version")
    payload = dict(payload or {})
    if {"version", "config_version"} & payload.keys():
        raise ApplicationError(
            gettext("The version is set by the rollout, not in the payload."),
            code="invalid_payload",
        )
    plan = wave_plan_parse(wave_plan)
    with transaction.atomic():
        rollout = Rollout.objects.create(
            name=name,
            kind=kind,
            version=version,
            payload=payload,
            target_region=target_region,
            target_tag=target_tag,
            target_hardware_model=target_hardware_model,
            wave_plan=plan,
            success_threshold_pct=success_threshold_pct,
            error_threshold_pct=error_threshold_pct,
            min_sample=min_sample,
            command_ttl_s=command_ttl_s or settings.CABINET_CONFIG_COMMAND_TTL_S,
            **actor.event_fields(),
        )
        RolloutWave.objects.bulk_create(
            RolloutWave(rollout=rollout, number=n, spec=spec) for n, spec in enumerate(plan, 1)
        )
        rollout_event_record(rollout, action="created", actor=actor, to_state=rollout.state)
    return rollout


def rollout_start(*, rollout_id: int, actor: Actor) -> Rollout:
    """Cheap: the targets are planned and the commands sent by the worker."""
    with transaction.atomic():
        rollout = rollout_lock(rollout_id)
        rollout_move(rollout, to_state=RolloutState.RUNNING, action="started", actor=actor)
        _advance_after_commit(rollout.pk)
    return rollout


def rollout_pause(*, rollout_id: int, actor: Actor, reason: str = "") -> Rollout:
    """No new commands; those already sent still report their results."""
    with transaction.atomic():
        rollout = rollout_lock(rollout_id)
        rollout_move(
            rollout, to_state=RolloutState.PAUSED, action="paused", actor=actor, detail=reason
        )
    return rollout


def rollout_resume(*, rollout_id: int, actor: Actor) -> Rollout:
    """Resuming a rollout paused on a wave that finished under its success threshold accepts
    that wave: the operator has looked and decided to go on."""
    with transaction.atomic():
        rollout = rollout_lock(rollout_id)
        rollout_move(rollout, to_state=RolloutState.RUNNING, action="resumed", actor=actor)
        wave = rollout_current_wave(rollout)
        if wave is not None and wave.state == RolloutWaveState.RUNNING:
            counts = wave_counts(wave)
            if counts.fell_short(rollout):
                wave_pass(rollout, wave, actor=actor, action="wave_accepted", counts=counts)
        _advance_after_commit(rollout.pk)
    return rollout


def rollout_abort(*, rollout_id: int, actor: Actor, reason: str = "") -> Rollout:
    with transaction.atomic():
        rollout = rollout_lock(rollout_id)
        rollout_move(
            rollout, to_state=RolloutState.ABORTED, action="aborted", actor=actor, detail=reason
        )
        rollout_stop_unsent(rollout)
    return rollout


def rollout_retry_failed(*, rollout_id: int, actor: Actor) -> int:
    """Schedule failed and timed-out cabinets again. A paused rollout stays paused (resume it
    to send them); a completed one runs again."""
    with transaction.atomic():
        rollout = rollout_lock(rollout_id)
        if rollout.state not in (RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.COMPLETED):
            raise ApplicationError(
                gettext("A %(state)s rollout cannot retry.")
                % {"state": rollout.get_state_display()},
                code="invalid_transition",
            )
        retried = RolloutTarget.objects.filter(
            rollout=rollout, state__in=target_sources(RolloutTargetState.SCHEDULED)
        ).update(state=RolloutTargetState.SCHEDULED, command=None, updated_at=timezone.now())
        if retried and rollout.state == RolloutState.COMPLETED:
            rollout_move(rollout, to_state=RolloutState.RUNNING, action="reopened", actor=actor)
        rollout_event_record(rollout, action="retry_failed", actor=actor, data={"targets": retried})
        if rollout.state == RolloutState.RUNNING:
            _advance_after_commit(rollout.pk)
    return retried
