"""The face matching policy, as pure functions over encodings. No Django, no dlib.

A locker door opens on `match_probe`: the best person must be close (threshold) and clearly
closer than anyone else (margin), because a face that is almost as close to two people is
exactly the case where the model confuses relatives and look-alikes. The values below come
from measurements on the project's test photos; see docs/face-calibration.md.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

# face_recognition's 0.6 is tuned for tagging photos, not for opening a door: it is known
# to confuse siblings, children and many East Asian faces, whose impostor distances are
# reported between 0.45 and 0.6. Measured with 10-jitter encodings (FACE_ENCODER_JITTERS) on
# lfw-dev (East and Southeast Asian faces, press photos years apart): at 0.42, 10.0% of the
# same-person pairs are refused and 2.0% of the different-person pairs accepted (at 1
# jitter, 0.44 gave 10.0% / 2.6%). The matcher's "match" is a gate: what opens a door is the
# door policy (identity.door_policy, open within 0.30). See docs/face-calibration.md.
DEFAULT_MATCH_THRESHOLD = 0.42
DEFAULT_MATCH_MARGIN = 0.08
# A 1:1 check against an official ID photo is a claim of identity without the margin
# rule to back it, so it is held to a stricter bar; a failure goes to manual review. At 10
# jitters on lfw-dev 0.38 accepts 0.3% of different-person pairs and refuses 18.3% of
# same-person ones (at 1 jitter 0.40 gave 0.6% / 16.7%).
DEFAULT_VERIFY_THRESHOLD = 0.38

MAX_TEMPLATES_PER_PERSON = 3

Decision = Literal["match", "no_match", "ambiguous", "no_candidates"]


@dataclass(frozen=True)
class Candidate:
    key: Hashable
    encodings: Sequence[np.ndarray]


@dataclass(frozen=True)
class MatchDecision:
    decision: Decision
    # Set only on "match", so that `if decision.best_key` can never open a door by mistake;
    # `nearest_key` names the closest person whatever the decision, for audit logs.
    best_key: Hashable | None
    nearest_key: Hashable | None
    best_distance: float | None
    second_distance: float | None
    threshold: float
    margin: float
    candidates: int

    @property
    def is_match(self) -> bool:
        return self.decision == "match"

    @property
    def gap(self) -> float | None:
        if self.best_distance is None or self.second_distance is None:
            return None
        return self.second_distance - self.best_distance

    def explain(self) -> str:
        if self.decision == "no_candidates":
            return "no_candidates: nobody to compare with"
        best = f"best {self.best_distance:.3f}" if self.best_distance is not None else "best -"
        second = (
            f"second {self.second_distance:.3f}"
            if self.second_distance is not None
            else "no second candidate"
        )
        gap = f", gap {self.gap:.3f}" if self.gap is not None else ""
        rule = f"threshold {self.threshold:.3f}, margin {self.margin:.3f}"
        if self.decision == "match":
            reason = "close enough and clearly closest"
        elif self.decision == "ambiguous":
            reason = "close enough but another person is nearly as close"
        else:
            reason = "nobody close enough"
        figures = f"{best}, {second}{gap}; {rule}; {self.candidates} candidates"
        return f"{self.decision}: {reason} ({figures})"


@dataclass(frozen=True)
class VerifyDecision:
    verified: bool
    distance: float | None
    threshold: float

    def explain(self) -> str:
        if self.distance is None:
            return f"not verified: no reference encoding (threshold {self.threshold:.3f})"
        verdict = "verified" if self.verified else "not verified"
        return f"{verdict}: distance {self.distance:.3f}, threshold {self.threshold:.3f}"


def face_distances(encodings: Sequence[np.ndarray] | np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Euclidean distances from `probe` to each encoding, as face_recognition computes them."""
    if len(encodings) == 0:
        return np.empty((0,), dtype=np.float64)
    matrix = np.asarray(encodings, dtype=np.float64).reshape(len(encodings), -1)
    vector = np.asarray(probe, dtype=np.float64).reshape(-1)
    if matrix.shape[1] != vector.shape[0]:
        raise ValueError(f"encoding sizes differ: {matrix.shape[1]} and {vector.shape[0]}")
    return np.linalg.norm(matrix - vector, axis=1)


def match_probe(
    probe: np.ndarray,
    candidates: Sequence[Candidate],
    *,
    threshold: float = DEFAULT_MATCH_THRESHOLD,
    margin: float = DEFAULT_MATCH_MARGIN,
) -> MatchDecision:
    """Who, among `candidates`, is the person in `probe`, if anyone with confidence.

    A person's distance is the minimum over their templates. The best person is accepted
    only if within `threshold` and at least `margin` closer than the second-best person.
    """
    scored: list[tuple[float, Hashable]] = []
    for candidate in candidates:
        distances = face_distances(candidate.encodings, probe)
        if distances.size:
            scored.append((float(distances.min()), candidate.key))
    if not scored:
        return MatchDecision("no_candidates", None, None, None, None, threshold, margin, 0)

    scored.sort(key=lambda item: item[0])
    best_distance, best_key = scored[0]
    second_distance = scored[1][0] if len(scored) > 1 else None

    decision: Decision
    if best_distance > threshold:
        decision = "no_match"
    elif second_distance is not None and second_distance - best_distance < margin:
        decision = "ambiguous"
    else:
        decision = "match"
    return MatchDecision(
        decision=decision,
        best_key=best_key if decision == "match" else None,
        nearest_key=best_key,
        best_distance=best_distance,
        second_distance=second_distance,
        threshold=threshold,
        margin=margin,
        candidates=len(scored),
    )


def verify_one_to_one(
    probe: np.ndarray,
    encodings: Sequence[np.ndarray],
    *,
    threshold: float = DEFAULT_VERIFY_THRESHOLD,
) -> VerifyDecision:
    """Is `probe` the same person as the reference encodings (e.g. from an ID document)?"""
    distances = face_distances(encodings, probe)
    if not distances.size:
        return VerifyDecision(verified=False, distance=None, threshold=threshold)
    distance = float(distances.min())
    return VerifyDecision(verified=distance <= threshold, distance=distance, threshold=threshold)
