"""Staged rollouts: a config or firmware version delivered to many cabinets, wave by wave.

An operator creates a rollout and starts, pauses, resumes, aborts it or retries its failures;
those services only change state and write an audit row. The work (planning the targets,
issuing commands, judging waves against their thresholds) is `rollout_advance`, run by Celery:
beat every ROLLOUT_TICK_S and once right after an operator action. Command results reach the
targets through the `command_finished` signal, expiries through the next tick.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from cabinets.models import (
    COMMAND_OPEN_STATUSES,
    ROLLOUT_KIND_ACTION,
    ROLLOUT_KIND_VERSION_FIELD,
    ROLLOUT_TARGET_OPEN,
    ROLLOUT_TARGET_TRANSITIONS,
    ROLLOUT_TRANSITIONS,
    Cabinet,
    CabinetCommand,
    CabinetState,
    CabinetTag,
    CommandStatus,
    Rollout,
    RolloutEvent,
    RolloutKind,
    RolloutState,
    RolloutTarget,
    RolloutTargetState,
    RolloutWave,
    RolloutWaveState,
)
from cabinets.services.commands import command_issue
from core.actors import Actor
from core.errors import ApplicationError
from core.transitions import check_transition

logger = logging.getLogger(__name__)

DEFAULT_WAVE_PLAN = ("5", "1%", "10%", "50%", "100%")
_WAVE_SPEC = re.compile(r"^(?:(?P<count>\d+)|(?P<pct>\d+(?:\.\d+)?)%)$")
# Cabinets in these states receive rollouts; provisioning and retired ones do not.
TARGETABLE_STATES = (CabinetState.ACTIVE, CabinetState.MAINTENANCE)

COMMAND_TO_TARGET: dict[str, str] = {
    CommandStatus.RECEIVED: RolloutTargetState.RECEIVED,
    CommandStatus.SUCCEEDED: RolloutTargetState.SUCCEEDED,
    CommandStatus.FAILED: RolloutTargetState.FAILED,
    CommandStatus.REJECTED: RolloutTargetState.FAILED,
    CommandStatus.EXPIRED: RolloutTargetState.TIMED_OUT,
}


def _sources(to_state: str) -> list[str]:
    """The target states from which the transition map allows `to_state`: every bulk update
    of targets filters on them, so the map holds for updates of thousands of rows too."""
    return [s for s, targets in ROLLOUT_TARGET_TRANSITIONS.items() if to_state in targets]


# --- Plans -----------------------------------------------------------------------------------


def wave_plan_parse(text: str | Iterable[str]) -> list[str]:
    """ "5, 1%, 10%, 50%, 100%" -> ["5", "1%", "10%", "50%", "100%"]; the last wave always
    covers every target (a plan that stops short gets a final "100%")."""
    items = text.replace(";", ",").split(",") if isinstance(text, str) else list(text)
    plan = [item.strip().replace(" ", "") for item in items if item.strip()]
    if not plan:
        raise ApplicationError("A rollout needs at least one wave.", code="invalid_wave_plan")
    for spec in plan:
        match = _WAVE_SPEC.match(spec)
        if match is None:
            raise ApplicationError(
                f"Wave {spec!r} is neither a count (5) nor a percentage (10%).",
                code="invalid_wave_plan",
            )
        if match["pct"] is not None and not 0 < float(match["pct"]) <= 100:
            raise ApplicationError(
                f"Wave {spec!r}: a percentage is between 0 and 100.", code="invalid_wave_plan"
            )
        if match["count"] is not None and int(match["count"]) == 0:
            raise ApplicationError("A wave of 0 cabinets is empty.", code="invalid_wave_plan")
    if plan[-1] != "100%":
        plan.append("100%")
    return plan


def wave_sizes(plan: list[str], total: int) -> list[int]:
    """Sizes of the waves for `total` targets; the plan is cumulative and never shrinks."""
    sizes, reached = [], 0
    for spec in plan:
        match = _WAVE_SPEC.match(spec)
        assert match is not None  # validated by wave_plan_parse
        if match["count"] is not None:
            cumulative = int(match["count"])
        else:
            cumulative = math.ceil(total * float(match["pct"]) / 100)
        cumulative = max(reached, min(cumulative, total))
        sizes.append(cumulative - reached)
        reached = cumulative
    return sizes


def rollout_target_queryset(rollout: Rollout) -> Any:
    cabinets = Cabinet.objects.filter(state__in=TARGETABLE_STATES)
    if rollout.target_region:
        cabinets = cabinets.filter(region=rollout.target_region)
    if rollout.target_hardware_model:
        cabinets = cabinets.filter(hardware_model=rollout.target_hardware_model)
    if rollout.target_tag_id:
        cabinets = cabinets.filter(tags=rollout.target_tag_id)
    return cabinets


# --- Operator actions ------------------------------------------------------------------------


def _event(
    rollout: Rollout,
    *,
    action: str,
    actor: Actor,
    from_state: str = "",
    to_state: str = "",
    wave: RolloutWave | None = None,
    detail: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    RolloutEvent.objects.create(
        rollout=rollout,
        action=action,
        from_state=from_state,
        to_state=to_state,
        wave_number=wave.number if wave else None,
        detail=detail[:255],
        data=data or {},
        **actor.event_fields(),
    )


def _move(
    rollout: Rollout,
    *,
    to_state: str,
    action: str,
    actor: Actor,
    detail: str = "",
    wave: RolloutWave | None = None,
) -> None:
    """Change a locked rollout's state, checked against the map, with its audit row."""
    from_state = rollout.state
    check_transition(ROLLOUT_TRANSITIONS, kind="rollout", current=from_state, target=to_state)
    rollout.state = to_state
    rollout.state_reason = detail[:255]
    fields = ["state", "state_reason"]
    now = timezone.now()
    if to_state == RolloutState.RUNNING and rollout.started_at is None:
        rollout.started_at = now
        fields.append("started_at")
    if to_state in (RolloutState.COMPLETED, RolloutState.ABORTED):
        rollout.finished_at = now
        fields.append("finished_at")
    elif rollout.finished_at is not None:
        rollout.finished_at = None
        fields.append("finished_at")
    rollout.save(update_fields=fields)
    _event(
        rollout,
        action=action,
        actor=actor,
        from_state=from_state,
        to_state=to_state,
        wave=wave,
        detail=detail,
    )


def _locked(rollout_id: int) -> Rollout:
    # Locked: the beat tick, the worker after an operator action and two operators all change
    # one rollout; each waits for the other and then sees its outcome.
    return Rollout.objects.select_for_update().get(pk=rollout_id)


def _advance_after_commit(rollout_id: int) -> None:
    # Imported here: the task module imports this one.
    from cabinets.rollout_tasks import rollout_advance_task

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
        raise ApplicationError(f"Unknown rollout kind {kind!r}.", code="invalid_kind")
    if kind == RolloutKind.CONFIG and not version.isdigit():
        # The protocol's set_config carries an integer config_version.
        raise ApplicationError(
            "A config version is a non-negative integer.", code="invalid_version"
        )
    if not version:
        raise ApplicationError("A rollout needs a version.", code="invalid_version")
    payload = dict(payload or {})
    if {"version", "config_version"} & payload.keys():
        raise ApplicationError(
            "The version is set by the rollout, not in the payload.", code="invalid_payload"
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
        _event(rollout, action="created", actor=actor, to_state=rollout.state)
    return rollout


def rollout_start(*, rollout_id: int, actor: Actor) -> Rollout:
    """Cheap: the targets are planned and the commands sent by the worker."""
    with transaction.atomic():
        rollout = _locked(rollout_id)
        _move(rollout, to_state=RolloutState.RUNNING, action="started", actor=actor)
        _advance_after_commit(rollout.pk)
    return rollout


def rollout_pause(*, rollout_id: int, actor: Actor, reason: str = "") -> Rollout:
    """No new commands; those already sent still report their results."""
    with transaction.atomic():
        rollout = _locked(rollout_id)
        _move(rollout, to_state=RolloutState.PAUSED, action="paused", actor=actor, detail=reason)
    return rollout


def rollout_resume(*, rollout_id: int, actor: Actor) -> Rollout:
    """Resuming a rollout paused on a wave that finished under its success threshold accepts
    that wave: the operator has looked and decided to go on."""
    with transaction.atomic():
        rollout = _locked(rollout_id)
        _move(rollout, to_state=RolloutState.RUNNING, action="resumed", actor=actor)
        wave = _current_wave(rollout)
        if wave is not None and wave.state == RolloutWaveState.RUNNING:
            counts = _wave_counts(wave)
            if counts.open == 0 and not counts.meets_success(rollout):
                _wave_pass(rollout, wave, actor=actor, action="wave_accepted", counts=counts)
        _advance_after_commit(rollout.pk)
    return rollout


def rollout_abort(*, rollout_id: int, actor: Actor, reason: str = "") -> Rollout:
    with transaction.atomic():
        rollout = _locked(rollout_id)
        _move(rollout, to_state=RolloutState.ABORTED, action="aborted", actor=actor, detail=reason)
        _stop_unsent(rollout)
    return rollout


def rollout_retry_failed(*, rollout_id: int, actor: Actor) -> int:
    """Schedule failed and timed-out cabinets again. A paused rollout stays paused (resume it
    to send them); a completed one runs again."""
    with transaction.atomic():
        rollout = _locked(rollout_id)
        if rollout.state not in (RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.COMPLETED):
            raise ApplicationError(
                f"A {rollout.state} rollout cannot retry.", code="invalid_transition"
            )
        retried = RolloutTarget.objects.filter(
            rollout=rollout, state__in=_sources(RolloutTargetState.SCHEDULED)
        ).update(state=RolloutTargetState.SCHEDULED, command=None, updated_at=timezone.now())
        if retried and rollout.state == RolloutState.COMPLETED:
            _move(rollout, to_state=RolloutState.RUNNING, action="reopened", actor=actor)
        _event(rollout, action="retry_failed", actor=actor, data={"targets": retried})
        if rollout.state == RolloutState.RUNNING:
            _advance_after_commit(rollout.pk)
    return retried


def _stop_unsent(rollout: Rollout) -> None:
    """Abort: nothing more goes out. Scheduled targets are cancelled, and so are commands the
    cabinet has not picked up yet (it would otherwise get them when it reconnects)."""
    now = timezone.now()
    RolloutTarget.objects.filter(rollout=rollout, state=RolloutTargetState.SCHEDULED).update(
        state=RolloutTargetState.CANCELLED, updated_at=now
    )
    # Commands before targets, the order the result path takes (command row, then target).
    # Compare-and-set on PENDING: a command the link has already sent is left to finish.
    unsent = CabinetCommand.objects.filter(
        rollout_target__rollout=rollout, status=CommandStatus.PENDING
    )
    cancelled_ids = list(unsent.values_list("pk", flat=True))
    CabinetCommand.objects.filter(pk__in=cancelled_ids, status=CommandStatus.PENDING).update(
        status=CommandStatus.EXPIRED, completed_at=now, result={"cancelled": "rollout aborted"}
    )
    RolloutTarget.objects.filter(
        rollout=rollout,
        command_id__in=cancelled_ids,
        state__in=_sources(RolloutTargetState.CANCELLED),
    ).update(state=RolloutTargetState.CANCELLED, updated_at=now)
    RolloutWave.objects.filter(
        rollout=rollout, state__in=(RolloutWaveState.PENDING, RolloutWaveState.RUNNING)
    ).update(state=RolloutWaveState.STOPPED, finished_at=now)


# --- Results from cabinets -------------------------------------------------------------------


def rollout_command_finished(*, command: CabinetCommand) -> None:
    """Runs inside the transaction that recorded the result: the target moves with it."""
    to_state = COMMAND_TO_TARGET.get(command.status)
    if to_state is None:
        return
    RolloutTarget.objects.filter(command_id=command.pk, state__in=_sources(to_state)).update(
        state=to_state, updated_at=timezone.now()
    )


def _reconcile(rollout: Rollout) -> None:
    """Fold command statuses into targets in bulk: receipts (no signal), expiries (bulk, no
    signal) and anything a lost signal missed. One UPDATE per command status."""
    now = timezone.now()
    in_flight = RolloutTarget.objects.filter(
        rollout=rollout, state__in=(RolloutTargetState.SENT, RolloutTargetState.RECEIVED)
    )
    for command_status, to_state in COMMAND_TO_TARGET.items():
        in_flight.filter(command__status=command_status, state__in=_sources(to_state)).update(
            state=to_state, updated_at=now
        )
    # A command still open past its expiry will never run (the cabinet refuses it too).
    in_flight.filter(
        command__status__in=COMMAND_OPEN_STATUSES, command__expires_at__lte=now
    ).update(state=RolloutTargetState.TIMED_OUT, updated_at=now)
    # The cabinet reported success: it runs the version now (telemetry will say so too).
    version_field = ROLLOUT_KIND_VERSION_FIELD[rollout.kind]
    Cabinet.objects.filter(
        rollout_targets__rollout=rollout,
        rollout_targets__state=RolloutTargetState.SUCCEEDED,
    ).exclude(**{version_field: rollout.version}).update(**{version_field: rollout.version})


# --- The driver ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveCounts:
    by_state: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, state: str) -> int:
        return self.by_state.get(state, 0)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    @property
    def open(self) -> int:
        return sum(self[s] for s in ROLLOUT_TARGET_OPEN)

    @property
    def errors(self) -> int:
        return self[RolloutTargetState.FAILED] + self[RolloutTargetState.TIMED_OUT]

    @property
    def finished(self) -> int:
        """Deliveries with an outcome; skipped and cancelled cabinets are not a sample."""
        return self[RolloutTargetState.SUCCEEDED] + self.errors

    @property
    def attempted(self) -> int:
        return self.finished + self.open

    def success_pct(self) -> float:
        return (
            100.0 * self[RolloutTargetState.SUCCEEDED] / self.finished if self.finished else 100.0
        )

    def error_pct(self) -> float:
        return 100.0 * self.errors / self.finished if self.finished else 0.0

    def sample_reached(self, rollout: Rollout) -> bool:
        # A wave smaller than the minimum sample is judged once it is complete.
        return self.finished > 0 and self.finished >= min(rollout.min_sample, self.attempted)

    def meets_success(self, rollout: Rollout) -> bool:
        return self.success_pct() >= rollout.success_threshold_pct

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.by_state,
            "success_pct": round(self.success_pct(), 1),
            "error_pct": round(self.error_pct(), 1),
        }


def _wave_counts(wave: RolloutWave) -> WaveCounts:
    rows = RolloutTarget.objects.filter(wave=wave).values("state").annotate(n=Count("id"))
    return WaveCounts({row["state"]: row["n"] for row in rows})


def _current_wave(rollout: Rollout) -> RolloutWave | None:
    return (
        RolloutWave.objects.filter(rollout=rollout)
        .exclude(state=RolloutWaveState.PASSED)
        .order_by("number")
        .first()
    )


def _wave_pass(
    rollout: Rollout, wave: RolloutWave, *, actor: Actor, action: str, counts: WaveCounts
) -> None:
    wave.state = RolloutWaveState.PASSED
    wave.finished_at = timezone.now()
    wave.save(update_fields=["state", "finished_at"])
    _event(rollout, action=action, actor=actor, wave=wave, data=counts.as_dict())


def _plan(rollout: Rollout) -> None:
    """Assign every target cabinet to a wave: pilots first, then a fixed shuffle (so a wave is
    a sample of the whole fleet, not of the lowest ids). Done once, in the worker."""
    cabinet_ids = list(rollout_target_queryset(rollout).values_list("pk", flat=True))
    pilots = set(
        Cabinet.objects.filter(
            pk__in=rollout_target_queryset(rollout).values("pk"),
            tags__name=settings.ROLLOUT_PILOT_TAG,
        ).values_list("pk", flat=True)
    )

    def order(pk: int) -> tuple[bool, bytes]:
        return (pk not in pilots, hashlib.sha256(f"{rollout.pk}:{pk}".encode()).digest())

    cabinet_ids.sort(key=order)
    waves = list(RolloutWave.objects.filter(rollout=rollout).order_by("number"))
    sizes = wave_sizes(list(rollout.wave_plan), len(cabinet_ids))
    targets: list[RolloutTarget] = []
    start = 0
    for wave, size in zip(waves, sizes, strict=True):
        wave.size = size
        targets.extend(
            RolloutTarget(rollout=rollout, wave=wave, cabinet_id=pk)
            for pk in cabinet_ids[start : start + size]
        )
        start += size
    RolloutWave.objects.bulk_update(waves, ["size"])
    RolloutTarget.objects.bulk_create(targets, batch_size=2000)
    rollout.planned_at = timezone.now()
    rollout.save(update_fields=["planned_at"])
    _event(
        rollout,
        action="planned",
        actor=Actor.system("rollout driver"),
        data={"targets": len(cabinet_ids), "waves": sizes},
    )


def _send(rollout: Rollout, *, budget: int) -> int:
    """Issue commands for scheduled targets of started waves, at most `budget` of them.
    Cabinets already at the version are skipped without a command."""
    if budget <= 0:
        return 0
    now = timezone.now()
    started = Q(wave__state__in=(RolloutWaveState.RUNNING, RolloutWaveState.PASSED))
    scheduled = RolloutTarget.objects.filter(
        started, rollout=rollout, state=RolloutTargetState.SCHEDULED
    )
    version_field = ROLLOUT_KIND_VERSION_FIELD[rollout.kind]
    scheduled.filter(**{f"cabinet__{version_field}": rollout.version}).update(
        state=RolloutTargetState.SKIPPED, updated_at=now
    )
    batch = list(scheduled.select_related("cabinet").order_by("wave__number", "id")[:budget])
    payload = dict(rollout.payload)
    if rollout.kind == RolloutKind.CONFIG:
        payload["config_version"] = int(rollout.version)
    else:
        payload["version"] = rollout.version
    actor = Actor.system(f"rollout {rollout.pk}")
    for target in batch:
        command = command_issue(
            cabinet=target.cabinet,
            action=ROLLOUT_KIND_ACTION[rollout.kind],
            actor=actor,
            payload=payload,
            reason=f"rollout {rollout.pk}: {rollout.name}"[:255],
            ttl_s=rollout.command_ttl_s,
        )
        target.state = RolloutTargetState.SENT
        target.command = command
        target.attempts += 1
    RolloutTarget.objects.bulk_update(batch, ["state", "command", "attempts", "updated_at"])
    return len(batch)


@dataclass
class AdvanceOutcome:
    state: str
    sent: int = 0
    wave: int | None = None
    decisions: list[str] = field(default_factory=list)


def rollout_advance(*, rollout_id: int) -> AdvanceOutcome:
    """One step of a running rollout; idempotent, so a duplicate or late tick does no harm."""
    driver = Actor.system("rollout driver")
    with transaction.atomic():
        rollout = _locked(rollout_id)
        outcome = AdvanceOutcome(state=rollout.state)
        if rollout.state != RolloutState.RUNNING:
            return outcome
        if rollout.planned_at is None:
            _plan(rollout)
        _reconcile(rollout)
        # Waves are judged in order; a passing wave opens the next one in the same step.
        for _ in range(len(rollout.wave_plan) + 1):
            wave = _current_wave(rollout)
            if wave is None:
                _move(rollout, to_state=RolloutState.COMPLETED, action="completed", actor=driver)
                outcome.decisions.append("completed")
                break
            outcome.wave = wave.number
            if wave.state == RolloutWaveState.PENDING:
                wave.state = RolloutWaveState.RUNNING
                wave.started_at = timezone.now()
                wave.save(update_fields=["state", "started_at"])
                _event(rollout, action="wave_started", actor=driver, wave=wave)
                outcome.decisions.append(f"wave {wave.number} started")
                outcome.sent += _send(rollout, budget=settings.ROLLOUT_SEND_BATCH)
            counts = _wave_counts(wave)
            if counts.sample_reached(rollout) and counts.error_pct() > rollout.error_threshold_pct:
                detail = (
                    f"wave {wave.number}: {counts.error_pct():.0f}% errors "
                    f"> {rollout.error_threshold_pct}% ({counts.errors}/{counts.finished})"
                )
                _move(
                    rollout,
                    to_state=RolloutState.ABORTED,
                    action="auto_aborted",
                    actor=driver,
                    detail=detail,
                    wave=wave,
                )
                _stop_unsent(rollout)
                outcome.decisions.append(detail)
                break
            if counts.open:
                break
            if not counts.meets_success(rollout):
                detail = (
                    f"wave {wave.number}: {counts.success_pct():.0f}% succeeded "
                    f"< {rollout.success_threshold_pct}%"
                )
                _move(
                    rollout,
                    to_state=RolloutState.PAUSED,
                    action="auto_paused",
                    actor=driver,
                    detail=detail,
                    wave=wave,
                )
                outcome.decisions.append(detail)
                break
            _wave_pass(rollout, wave, actor=driver, action="wave_passed", counts=counts)
            outcome.decisions.append(f"wave {wave.number} passed")
        if rollout.state == RolloutState.RUNNING:
            outcome.sent += _send(rollout, budget=settings.ROLLOUT_SEND_BATCH - outcome.sent)
        outcome.state = rollout.state
    if outcome.decisions:
        logger.info("rollout %s: %s", rollout_id, "; ".join(outcome.decisions))
    return outcome


def rollouts_running_ids() -> list[int]:
    return list(
        Rollout.objects.filter(state=RolloutState.RUNNING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# --- Selectors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveProgress:
    wave: RolloutWave
    counts: WaveCounts

    @property
    def done_pct(self) -> float:
        total = self.counts.total
        return 100.0 * (total - self.counts.open) / total if total else 0.0


def rollout_progress(rollout: Rollout) -> list[WaveProgress]:
    """Per-wave counts of target states: two queries, whatever the size of the rollout."""
    waves = list(RolloutWave.objects.filter(rollout=rollout).order_by("number"))
    rows = (
        RolloutTarget.objects.filter(rollout=rollout)
        .values("wave_id", "state")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_wave: dict[int, dict[str, int]] = {}
    for row in rows:
        by_wave.setdefault(row["wave_id"], {})[row["state"]] = row["n"]
    return [WaveProgress(wave=w, counts=WaveCounts(by_wave.get(w.pk, {}))) for w in waves]
