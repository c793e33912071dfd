"""The door policy's rules, on synthetic match decisions (no faces, no database)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from identity.door_policy import (
    DEFAULT_CONFIRM_MARGIN,
    DEFAULT_CONFIRM_THRESHOLD,
    DEFAULT_OPEN_MARGIN,
    DEFAULT_OPEN_THRESHOLD,
    DOOR_MODES,
    DoorDecision,
    DoorPolicy,
    door_decide,
)
from identity.matching import Candidate, MatchDecision, match_probe

# Round figures, so that the tests read without the calibrated defaults.
POLICY = DoorPolicy(
    mode="grey_zone",
    open_threshold=0.40,
    open_margin=0.08,
    confirm_threshold=0.50,
    confirm_margin=0.02,
    tighten_per_doubling=0.02,
)
RANK = {"refuse": 0, "confirm": 1, "open": 2}


def matched(
    best: float | None,
    second: float | None = None,
    *,
    candidates: int | None = None,
    threshold: float = 0.44,
    margin: float = 0.08,
) -> MatchDecision:
    """`match_probe`'s decision for a probe at `best` from "recipient", at `second` from
    another person, and the rest of `candidates` far away."""
    people: list[Candidate] = []
    if best is not None:
        people.append(Candidate("recipient", [at(best, 0)]))
    if second is not None:
        people.append(Candidate("second", [at(second, 1)]))
    while candidates is not None and len(people) < candidates:
        people.append(Candidate(f"far {len(people)}", [at(5.0, len(people) + 1)]))
    return match_probe(np.zeros(128), people, threshold=threshold, margin=margin)


def at(distance: float, axis: int) -> np.ndarray:
    vector = np.zeros(128)
    vector[axis] = distance
    return vector


def decide(
    match: MatchDecision, *, waiting: int = 1, live: bool = True, **changes: object
) -> DoorDecision:
    policy = dataclasses.replace(POLICY, **changes) if changes else POLICY
    return door_decide(match=match, waiting=waiting, live=live, policy=policy)


def test_a_close_and_clearly_closest_face_opens_alone() -> None:
    decision = decide(matched(0.30, 0.60))
    assert (decision.action, decision.reason) == ("open", "clear_match")


def test_a_face_that_is_not_live_is_refused_however_close() -> None:
    decision = decide(matched(0.10, 0.90), live=False)
    assert (decision.action, decision.reason) == ("refuse", "not_live")


def test_nobody_to_compare_with_is_refused() -> None:
    assert decide(matched(None)).reason == "no_candidates"
    assert decide(matched(None)).action == "refuse"


def test_open_requires_the_matchers_own_match() -> None:
    # Within this policy's open zone, but the matcher was configured stricter (0.25).
    strict = matched(0.30, 0.60, threshold=0.25)
    assert strict.decision == "no_match"
    assert decide(strict).action == "confirm"
    assert decide(strict, mode="never").reason == "not_a_match"
    assert decide(strict, mode="never").action == "refuse"


def test_the_grey_zone_asks_for_confirmation() -> None:
    # Too far to open alone, within the confirm threshold.
    far = decide(matched(0.45, 0.70))
    assert (far.action, far.reason) == ("confirm", "grey_zone")
    # Close, but the second-closest recipient is within the open margin.
    crowded = decide(matched(0.30, 0.34))
    assert (crowded.action, crowded.reason) == ("confirm", "grey_zone")


def test_beyond_the_confirm_zone_it_refuses_with_the_reason() -> None:
    assert decide(matched(0.51, 0.80)).reason == "too_far"
    assert decide(matched(0.30, 0.31)).reason == "ambiguous"
    assert decide(matched(0.30, 0.31)).action == "refuse"


def test_never_mode_refuses_the_grey_zone() -> None:
    assert decide(matched(0.45, 0.70), mode="never").action == "refuse"
    assert decide(matched(0.45, 0.70), mode="never").reason == "too_far"
    assert decide(matched(0.30, 0.34), mode="never").reason == "ambiguous"
    assert decide(matched(0.30, 0.60), mode="never").action == "open"


def test_always_confirm_mode_confirms_a_clear_match_instead_of_opening() -> None:
    decision = decide(matched(0.20, 0.70), mode="always_confirm")
    assert (decision.action, decision.reason) == ("confirm", "always_confirm")
    assert decide(matched(0.45, 0.70), mode="always_confirm").reason == "grey_zone"


def test_more_waiting_recipients_tighten_the_thresholds() -> None:
    # 0.02 off per doubling: 0.40 at 1 waiting, 0.36 at 4, 0.334 at 10.
    assert POLICY.open_threshold_for(1) == pytest.approx(0.40)
    assert POLICY.open_threshold_for(4) == pytest.approx(0.36)
    assert POLICY.confirm_threshold_for(4) == pytest.approx(0.46)
    assert decide(matched(0.37, 0.60), waiting=1).action == "open"
    assert decide(matched(0.37, 0.60), waiting=4).action == "confirm"
    assert decide(matched(0.48, 0.70), waiting=1).action == "confirm"
    assert decide(matched(0.48, 0.70), waiting=4).action == "refuse"


def test_under_reporting_the_waiting_count_does_not_loosen_the_policy() -> None:
    # Ten candidates were compared: the policy counts ten whatever `waiting` says.
    decision = decide(matched(0.37, 0.60, candidates=10), waiting=1)
    assert decision.action == "confirm"
    assert decision.waiting == 10


def test_the_thresholds_are_inclusive_and_the_margins_are_minimums() -> None:
    # One candidate: nothing to tighten and no margin to meet.
    assert decide(matched(0.40)).action == "open"
    assert decide(matched(0.50)).action == "confirm"
    # Margins in binary fractions, so that the gap is exact.
    margins = {"open_margin": 0.125, "confirm_margin": 0.0625, "tighten_per_doubling": 0.0}
    assert decide(matched(0.25, 0.375, margin=0.125), **margins).action == "open"
    assert decide(matched(0.25, 0.3125, margin=0.125), **margins).action == "confirm"


def test_the_explanation_gives_the_reason_and_the_figures() -> None:
    text = decide(matched(0.45, 0.70), waiting=4).explain()
    assert text.startswith("confirm: close, but not enough to open")
    assert "best 0.450, second 0.700" in text
    assert "4 waiting, mode grey_zone" in text
    assert "open within 0.360" in text
    assert "confirm within 0.460" in text
    assert "confirm within" not in decide(matched(0.45, 0.70), mode="never").explain()
    assert decide(matched(0.3), live=False).explain().startswith("refuse: the liveness check")
    assert DoorDecision(action="refuse", reason="no_candidates").explain().startswith("refuse")


def test_the_policy_refuses_inconsistent_figures() -> None:
    with pytest.raises(ValueError, match="mode"):
        DoorPolicy(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="confirm threshold"):
        DoorPolicy(open_threshold=0.5, confirm_threshold=0.4)
    with pytest.raises(ValueError, match="confirm margin"):
        DoorPolicy(open_margin=0.02, confirm_margin=0.05)
    with pytest.raises(ValueError, match=">= 0"):
        DoorPolicy(tighten_per_doubling=-0.01)


def test_the_deployment_policy_comes_from_settings_with_the_module_defaults() -> None:
    policy = DoorPolicy.from_settings()
    assert policy.open_threshold == DEFAULT_OPEN_THRESHOLD
    assert policy.open_margin == DEFAULT_OPEN_MARGIN
    assert policy.confirm_threshold == DEFAULT_CONFIRM_THRESHOLD
    assert policy.confirm_margin == DEFAULT_CONFIRM_MARGIN
    with override_settings(FACE_DOOR_POLICY_MODE="never", FACE_DOOR_OPEN_THRESHOLD=0.3):
        changed = DoorPolicy.from_settings()
    assert (changed.mode, changed.open_threshold) == ("never", 0.3)
    with (
        override_settings(FACE_DOOR_POLICY_MODE="sometimes"),
        pytest.raises(ImproperlyConfigured, match="FACE_DOOR_"),
    ):
        DoorPolicy.from_settings()


distances = st.floats(min_value=0.0, max_value=1.2, allow_nan=False)


@given(
    best=distances,
    extra=st.one_of(st.none(), distances),
    waiting=st.integers(min_value=1, max_value=50),
    more=st.integers(min_value=0, max_value=50),
    live=st.booleans(),
)
def test_properties_over_any_match(
    best: float, extra: float | None, waiting: int, more: int, live: bool
) -> None:
    match = matched(best, None if extra is None else best + extra)
    by_mode = {mode: decide(match, waiting=waiting, live=live, mode=mode) for mode in DOOR_MODES}
    for decision in by_mode.values():
        if decision.action == "open":
            assert match.is_match and live
        if not live:
            assert decision.action == "refuse"
    assert by_mode["never"].action != "confirm"
    assert by_mode["always_confirm"].action != "open"
    # Whatever is open in one mode is at least a confirmation in the others.
    if by_mode["grey_zone"].action == "open":
        assert by_mode["always_confirm"].action == "confirm"
        assert by_mode["never"].action == "open"
    # More recipients waiting never loosens a decision.
    for mode in DOOR_MODES:
        busier = decide(match, waiting=waiting + more, live=live, mode=mode)
        assert RANK[busier.action] <= RANK[by_mode[mode].action]
