"""Reads of rollouts: which cabinets a rollout targets, counts of target states per wave, the
wave being worked on, progress for the admin, and the running rollouts for the beat tick."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count

from cabinets.models import (
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
