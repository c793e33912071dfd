from __future__ import annotations

import numpy as np
import pytest

from identity.matching import (
    DEFAULT_MATCH_MARGIN,
    DEFAULT_MATCH_THRESHOLD,
    DEFAULT_VERIFY_THRESHOLD,
    Candidate,
    face_distances,
    match_probe,
    verify_one_to_one,
)


def at(distance: float, axis: int = 0) -> np.ndarray:
    """A 128-d vector at `distance` from the origin probe, along one axis."""
    vector = np.zeros(128)
    vector[axis] = distance
    return vector


PROBE = np.zeros(128)


def test_the_defaults_are_stricter_than_the_library_and_verification_is_strictest() -> None:
    assert DEFAULT_VERIFY_THRESHOLD < DEFAULT_MATCH_THRESHOLD < 0.6
    assert 0.05 <= DEFAULT_MATCH_MARGIN <= 0.15


def test_distances_are_euclidean_like_face_recognition() -> None:
    distances = face_distances([at(0.3), np.full(128, 0.1)], PROBE)
    assert distances == pytest.approx([0.3, np.sqrt(128 * 0.01)])
    assert face_distances([], PROBE).shape == (0,)
    with pytest.raises(ValueError):
        face_distances([np.zeros(64)], PROBE)


def test_it_matches_the_clearly_closest_person_within_the_threshold() -> None:
    decision = match_probe(
        PROBE,
        [Candidate("recipient", [at(0.30)]), Candidate("stranger", [at(0.75, 1)])],
        threshold=0.42,
        margin=0.08,
    )
    assert decision.decision == "match"
    assert decision.is_match
    assert decision.best_key == "recipient"
    assert decision.best_distance == pytest.approx(0.30)
    assert decision.second_distance == pytest.approx(0.75)
    assert decision.gap == pytest.approx(0.45)
    assert "match" in decision.explain()
    assert "0.300" in decision.explain()


def test_a_persons_distance_is_the_minimum_over_their_templates() -> None:
    decision = match_probe(
        PROBE,
        [Candidate("recipient", [at(0.9), at(0.2, 2), at(0.5, 3)]), Candidate("other", [at(0.4)])],
        threshold=0.42,
        margin=0.08,
    )
    assert decision.best_key == "recipient"
    assert decision.best_distance == pytest.approx(0.2)
    assert decision.second_distance == pytest.approx(0.4)


def test_it_refuses_when_two_people_are_nearly_equally_close() -> None:
    decision = match_probe(
        PROBE,
        [Candidate("twin_a", [at(0.30)]), Candidate("twin_b", [at(0.35, 1)])],
        threshold=0.42,
        margin=0.08,
    )
    assert decision.decision == "ambiguous"
    assert not decision.is_match
    assert decision.best_key is None
    assert decision.nearest_key == "twin_a"
    assert "ambiguous" in decision.explain()


def test_the_margin_only_counts_between_different_people() -> None:
    decision = match_probe(
        PROBE, [Candidate("recipient", [at(0.30), at(0.31, 1)])], threshold=0.42, margin=0.08
    )
    assert decision.decision == "match"
    assert decision.second_distance is None
    assert "no second candidate" in decision.explain()


def test_the_threshold_is_inclusive_and_the_margin_is_a_minimum() -> None:
    people = [Candidate("a", [at(0.25)]), Candidate("b", [at(0.5, 1)])]
    assert match_probe(PROBE, people, threshold=0.25, margin=0.25).decision == "match"
    assert match_probe(PROBE, people, threshold=0.2499, margin=0.25).decision == "no_match"
    assert match_probe(PROBE, people, threshold=0.25, margin=0.2501).decision == "ambiguous"


def test_nobody_close_enough_is_no_match() -> None:
    decision = match_probe(PROBE, [Candidate("stranger", [at(0.5)])], threshold=0.42, margin=0.08)
    assert decision.decision == "no_match"
    assert decision.best_key is None
    assert decision.nearest_key == "stranger"
    assert "nobody close enough" in decision.explain()


@pytest.mark.parametrize("candidates", [[], [Candidate("no templates", [])]])
def test_no_candidates_is_its_own_decision(candidates: list[Candidate]) -> None:
    decision = match_probe(PROBE, candidates, threshold=0.42, margin=0.08)
    assert decision.decision == "no_candidates"
    assert decision.best_distance is None
    assert decision.candidates == 0
    assert "no_candidates" in decision.explain()


def test_the_defaults_are_used_when_not_given() -> None:
    decision = match_probe(PROBE, [Candidate("a", [at(DEFAULT_MATCH_THRESHOLD + 0.001)])])
    assert decision.decision == "no_match"
    assert decision.threshold == DEFAULT_MATCH_THRESHOLD
    assert decision.margin == DEFAULT_MATCH_MARGIN


def test_one_to_one_verification_uses_its_own_stricter_threshold() -> None:
    between = (DEFAULT_VERIFY_THRESHOLD + DEFAULT_MATCH_THRESHOLD) / 2
    assert match_probe(PROBE, [Candidate("a", [at(between)])]).is_match
    refused = verify_one_to_one(PROBE, [at(between)])
    assert not refused.verified
    assert refused.threshold == DEFAULT_VERIFY_THRESHOLD
    accepted = verify_one_to_one(PROBE, [at(0.9), at(0.2, 1)], threshold=0.38)
    assert accepted.verified
    assert accepted.distance == pytest.approx(0.2)
    assert "verified" in accepted.explain()


def test_verification_without_a_reference_is_not_verified() -> None:
    decision = verify_one_to_one(PROBE, [], threshold=0.38)
    assert not decision.verified
    assert decision.distance is None
    assert "no reference" in decision.explain()
