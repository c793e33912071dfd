"""The door-level risk policy: from a face match, the number of recipients waiting at the
cabinet and the liveness result, open the door, ask for confirmation, or refuse.

Pure: no Django, no dlib (only `DoorPolicy.from_settings` reads settings). Every decision is
one call to `door_decide`, in production and in `face_eval`, so the figures measured on the
development set describe what the cabinets do. The values and why: docs/face-calibration.md.

The rules, in the order they are applied:

1. Not live, refuse (`not_live`): a face that did not pass the liveness check (or whose scan
   could not be checked) is a photo until proven otherwise. The caller decides what counts as
   live, e.g. an operator's waiver for single-frame cabinets.
2. Nobody to compare with, refuse (`no_candidates`).
3. The number of waiting recipients may tighten both thresholds: a stranger's nearest
   recipient is the minimum over everyone waiting, so the chance that somebody falls under a
   threshold grows with that number (`tighten_per_doubling` per doubling). With 10-jitter
   encodings the confirm threshold (0.38) is already below that crowd effect: the stranger
   who knows the target's digits stays at 0.6-1% from 1 to 20 waiting, so the default is 0
   (with 1 jitter and 0.44 it was 0.01). The count used is the larger of `waiting` and the
   number of candidates actually compared, so a caller cannot loosen the policy by
   under-reporting.
4. Open (`clear_match`, face alone) only when the matcher itself said "match" (its own
   threshold and margin), the best distance is within the tightened open threshold, and the
   second-closest recipient is at least `open_margin` farther: close and clearly closest.
5. Confirm (`grey_zone`) when open does not hold but the best distance is within the tightened
   confirm threshold and the second-closest recipient is at least `confirm_margin` farther.
   "Confirm" asks the person at the cabinet for the last four digits of their phone number,
   checked against the matched person only (`match.nearest_key`): one try.
6. Otherwise refuse: `too_far` (best beyond the threshold), `ambiguous` (another recipient
   is nearly as close) or `not_a_match` (in `never` mode, when the matcher's own threshold or
   margin is stricter than the open rule); the pickup code always works.

Modes, per deployment: `grey_zone` as above; `always_confirm` turns every open into a confirm
(reason `always_confirm`); `never` has no confirm step, so the grey zone is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from identity.matching import MatchDecision

DoorMode = Literal["always_confirm", "grey_zone", "never"]
DoorAction = Literal["open", "confirm", "refuse"]

DOOR_MODES: tuple[str, ...] = get_args(DoorMode)

# Measured on ../shared/faces/lfw-dev with templates and scans at 10 jitters
# (FACE_ENCODER_JITTERS); see docs/face-calibration.md.
DEFAULT_DOOR_MODE: DoorMode = "grey_zone"
# Face alone: at 0.30 (with the matcher's margin) no stranger opened a door alone in the
# simulated cabinets at 1 to 20 waiting; 40% of recipients get in on the face alone.
DEFAULT_OPEN_THRESHOLD = 0.30
DEFAULT_OPEN_MARGIN = 0.06
# With the phone digits: 0.38 lets 98% of recipients in at 1 to 20 waiting, and a stranger
# who knows the target's digits in 0.6-1%; a margin or tightening cost recipients there
# without lowering that (the grid in docs/face-calibration.md).
DEFAULT_CONFIRM_THRESHOLD = 0.38
DEFAULT_CONFIRM_MARGIN = 0.0
DEFAULT_TIGHTEN_PER_DOUBLING = 0.0


@dataclass(frozen=True)
class DoorPolicy:
    mode: DoorMode = DEFAULT_DOOR_MODE
    # Thresholds for one waiting recipient; see `threshold_for`.
    open_threshold: float = DEFAULT_OPEN_THRESHOLD
    open_margin: float = DEFAULT_OPEN_MARGIN
    confirm_threshold: float = DEFAULT_CONFIRM_THRESHOLD
    confirm_margin: float = DEFAULT_CONFIRM_MARGIN
    # Taken off both thresholds per doubling of the number of waiting recipients.
    tighten_per_doubling: float = DEFAULT_TIGHTEN_PER_DOUBLING

    def __post_init__(self) -> None:
        if self.mode not in DOOR_MODES:
            raise ValueError(f"door policy mode must be one of {', '.join(DOOR_MODES)}")
        figures = (
            self.open_threshold,
            self.open_margin,
            self.confirm_threshold,
            self.confirm_margin,
            self.tighten_per_doubling,
        )
        if any(not math.isfinite(value) or value < 0 for value in figures):
            raise ValueError("door policy thresholds, margins and tightening must be >= 0")
        # The confirm zone surrounds the open zone: a face that may open alone may always
        # be asked to confirm instead, never refused outright.
        if self.confirm_threshold < self.open_threshold:
            raise ValueError("the confirm threshold must be at least the open threshold")
        if self.confirm_margin > self.open_margin:
            raise ValueError("the confirm margin must be at most the open margin")

    @classmethod
    def from_settings(cls) -> DoorPolicy:
        """The deployment's policy: FACE_DOOR_POLICY_MODE, FACE_DOOR_OPEN_THRESHOLD,
        FACE_DOOR_OPEN_MARGIN, FACE_DOOR_CONFIRM_THRESHOLD, FACE_DOOR_CONFIRM_MARGIN,
        FACE_DOOR_TIGHTEN_PER_DOUBLING; each falls back to this module's default."""
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        try:
            return cls(
                mode=getattr(settings, "FACE_DOOR_POLICY_MODE", DEFAULT_DOOR_MODE),
                open_threshold=float(
                    getattr(settings, "FACE_DOOR_OPEN_THRESHOLD", DEFAULT_OPEN_THRESHOLD)
                ),
                open_margin=float(getattr(settings, "FACE_DOOR_OPEN_MARGIN", DEFAULT_OPEN_MARGIN)),
                confirm_threshold=float(
                    getattr(settings, "FACE_DOOR_CONFIRM_THRESHOLD", DEFAULT_CONFIRM_THRESHOLD)
                ),
                confirm_margin=float(
                    getattr(settings, "FACE_DOOR_CONFIRM_MARGIN", DEFAULT_CONFIRM_MARGIN)
                ),
                tighten_per_doubling=float(
                    getattr(
                        settings, "FACE_DOOR_TIGHTEN_PER_DOUBLING", DEFAULT_TIGHTEN_PER_DOUBLING
                    )
                ),
            )
        except ValueError as exc:
            raise ImproperlyConfigured(f"FACE_DOOR_*: {exc}") from exc

    def tightening(self, waiting: int) -> float:
        """How much both thresholds drop with `waiting` recipients (0 for one or none)."""
        return self.tighten_per_doubling * math.log2(max(waiting, 1))

    def open_threshold_for(self, waiting: int) -> float:
        return self.open_threshold - self.tightening(waiting)

    def confirm_threshold_for(self, waiting: int) -> float:
        return self.confirm_threshold - self.tightening(waiting)


@dataclass(frozen=True)
class DoorDecision:
    action: DoorAction
    # A stable code: not_live, no_candidates, clear_match, grey_zone, always_confirm,
    # too_far, ambiguous, not_a_match.
    reason: str
    mode: str = ""
    waiting: int = 0
    best_distance: float | None = None
    second_distance: float | None = None
    open_threshold: float | None = None
    open_margin: float | None = None
    confirm_threshold: float | None = None
    confirm_margin: float | None = None

    def explain(self) -> str:
        text = f"{self.action}: {_REASONS.get(self.reason, self.reason)}"
        if self.best_distance is None or self.open_threshold is None:
            return f"{text} ({self.waiting} waiting, mode {self.mode or '-'})"
        second = "-" if self.second_distance is None else f"{self.second_distance:.3f}"
        figures = [
            f"best {self.best_distance:.3f}, second {second}",
            f"{self.waiting} waiting, mode {self.mode}",
            f"open within {self.open_threshold:.3f} and margin {self.open_margin:.3f}",
        ]
        if self.mode != "never" and self.confirm_threshold is not None:
            figures.append(
                f"confirm within {self.confirm_threshold:.3f} and margin {self.confirm_margin:.3f}"
            )
        return f"{text} ({'; '.join(figures)})"


_REASONS = {
    "not_live": "the liveness check did not pass",
    "no_candidates": "nobody waiting here has an enrolled face",
    "clear_match": "close enough and clearly closest",
    "grey_zone": "close, but not enough to open on the face alone: ask for the phone digits",
    "always_confirm": "a clear match; this deployment always asks for the phone digits",
    "too_far": "nobody waiting here is close enough",
    "ambiguous": "another waiting recipient is nearly as close",
    "not_a_match": "the matcher's own threshold or margin refused the face",
}


def door_decide(
    *, match: MatchDecision, waiting: int, live: bool, policy: DoorPolicy
) -> DoorDecision:
    """Open, confirm or refuse; the rules are in this module's docstring.

    On "open" the person is `match.best_key`; on "confirm" the digits are checked against
    `match.nearest_key` only.
    """
    count = max(waiting, match.candidates, 1)
    open_t = policy.open_threshold_for(count)
    confirm_t = policy.confirm_threshold_for(count)

    def decision(action: DoorAction, reason: str) -> DoorDecision:
        return DoorDecision(
            action=action,
            reason=reason,
            mode=policy.mode,
            waiting=count,
            best_distance=match.best_distance,
            second_distance=match.second_distance,
            open_threshold=open_t,
            open_margin=policy.open_margin,
            confirm_threshold=confirm_t,
            confirm_margin=policy.confirm_margin,
        )

    if not live:
        return decision("refuse", "not_live")
    best = match.best_distance
    if match.decision == "no_candidates" or best is None or match.nearest_key is None:
        return decision("refuse", "no_candidates")
    # A lone candidate has nobody to be confused with: the margin holds by itself.
    gap = math.inf if match.second_distance is None else match.second_distance - best

    opens = match.is_match and best <= open_t and gap >= policy.open_margin
    if opens:
        if policy.mode == "always_confirm":
            return decision("confirm", "always_confirm")
        return decision("open", "clear_match")
    if policy.mode != "never" and best <= confirm_t and gap >= policy.confirm_margin:
        return decision("confirm", "grey_zone")
    never = policy.mode == "never"
    if best > (open_t if never else confirm_t):
        return decision("refuse", "too_far")
    if gap < (policy.open_margin if never else policy.confirm_margin):
        return decision("refuse", "ambiguous")
    # Within the open zone by the figures, but the matcher's own threshold or margin is
    # stricter than this policy's (a configuration the open rule does not override).
    return decision("refuse", "not_a_match")
