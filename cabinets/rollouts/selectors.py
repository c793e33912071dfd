"""Reads of rollouts: which cabinets a rollout targets, counts of target states per wave, the
wave being worked on, progress for the admin, and the running rollouts for the beat tick."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, CharField, Count, F, Value, When
from django.utils import timezone

from cabinets.models import (
    COMMAND_OPEN_STATUSES,
    COMMAND_TO_TARGET,
    ROLLOUT_TARGET_OPEN,
    Cabinet,
    CabinetState,
    Rollout,
    RolloutState,
    RolloutTarget,
    RolloutTargetState,
    RolloutWave,
    RolloutWaveState,
)
from cabinets.rollouts.plans import wave_sizes

# Cabinets in these states receive rollouts; provisioning and retired ones do not.
TARGETABLE_STATES = (CabinetState.ACTIVE, CabinetState.MAINTENANCE)


def rollout_target_queryset(rollout: Rollout) -> Any:
    cabinets = Cabinet.objects.filter(state__in=TARGETABLE_STATES)
    if rollout.target_region:
        cabinets = cabinets.filter(region=rollout.target_region)
    if rollout.target_hardware_model:
        cabinets = cabinets.filter(hardware_model=rollout.target_hardware_model)
    if rollout.target_tag_id:
        cabinets = cabinets.filter(tags=rollout.target_tag_id)
    return cabinets


@dataclass(frozen=True)
class WaveCounts:
    by_state: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, state: str) -> int:
        # Only target states are keys: Django templates try `counts[name]` before
        # `counts.name`, and answering 0 for every name hid `counts.by_state` and `counts.total`.
        if state not in RolloutTargetState.values:
            raise KeyError(state)
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
    def delivered(self) -> int:
        """Cabinets this wave is done with: an outcome, or already at the version. Cancelled
        ones (an abort) never got it and are not done."""
        return self.finished + self[RolloutTargetState.SKIPPED]

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

    def fell_short(self, rollout: Rollout) -> bool:
        """Finished, with too few successes to pass on its own."""
        return self.open == 0 and not self.meets_success(rollout)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.by_state,
            "success_pct": round(self.success_pct(), 1),
            "error_pct": round(self.error_pct(), 1),
        }


def wave_counts(wave: RolloutWave) -> WaveCounts:
    rows = RolloutTarget.objects.filter(wave=wave).values("state").annotate(n=Count("id"))
    return WaveCounts({row["state"]: row["n"] for row in rows})


def rollout_current_wave(rollout: Rollout) -> RolloutWave | None:
    return (
        RolloutWave.objects.filter(rollout=rollout)
        .exclude(state=RolloutWaveState.PASSED)
        .order_by("number")
        .first()
    )


def rollouts_running_ids() -> list[int]:
    return list(
        Rollout.objects.filter(state=RolloutState.RUNNING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


@dataclass(frozen=True)
class WaveProgress:
    wave: RolloutWave
    counts: WaveCounts

    @property
    def done_pct(self) -> float:
        """Share of the wave's cabinets delivered; cancelled ones count against it, so an
        aborted wave never reads 100%."""
        total = self.counts.total
        return 100.0 * self.counts.delivered / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.wave.number,
            "spec": self.wave.spec,
            "size": self.wave.size,
            "state": self.wave.state,
            "state_label": self.wave.get_state_display(),
            "counts": {state: self.counts[state] for state in RolloutTargetState.values},
            "total": self.counts.total,
            "done_pct": round(self.done_pct, 1),
        }


# Where a target with a command stands follows from its command's status: the target's own
# state is folded from the command on the driver's tick and may lag (receipts are folded in
# bulk). States the rollout itself decides (scheduled, skipped, cancelled) stand as stored.
_ROLLOUT_DECIDES = (
    RolloutTargetState.SCHEDULED,
    RolloutTargetState.SKIPPED,
    RolloutTargetState.CANCELLED,
)


def _target_state_from_command() -> Case:
    now = timezone.now()
    return Case(
        When(state__in=_ROLLOUT_DECIDES, then=F("state")),
        When(command__isnull=True, then=F("state")),
        When(
            command__status__in=COMMAND_OPEN_STATUSES,
            command__expires_at__lte=now,
            then=Value(RolloutTargetState.TIMED_OUT),
        ),
        *(
            When(command__status=command_status, then=Value(target_state))
            for command_status, target_state in COMMAND_TO_TARGET.items()
        ),
        default=Value(RolloutTargetState.SENT),
        output_field=CharField(),
    )


def rollout_progress(rollout: Rollout) -> list[WaveProgress]:
    """Per-wave counts of target states, derived from the commands' states: two queries,
    whatever the size of the rollout. The counts of a wave add up to its size."""
    waves = list(RolloutWave.objects.filter(rollout=rollout).order_by("number"))
    rows = (
        RolloutTarget.objects.filter(rollout=rollout)
        .annotate(shown=_target_state_from_command())
        .values("wave_id", "shown")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_wave: dict[int, dict[str, int]] = {}
    for row in rows:
        by_wave.setdefault(row["wave_id"], {})[row["shown"]] = row["n"]
    return [WaveProgress(wave=w, counts=WaveCounts(by_wave.get(w.pk, {}))) for w in waves]


@dataclass(frozen=True)
class TargetPreview:
    """What Start would reach, before the worker plans the waves."""

    total: int
    wave_sizes: list[int]


def rollout_target_preview(rollout: Rollout) -> TargetPreview:
    total = rollout_target_queryset(rollout).count()
    return TargetPreview(total=total, wave_sizes=wave_sizes(list(rollout.wave_plan), total))
