"""The door simulation of face_eval, on fake encodings: arithmetic, reproducibility, and that
every scan goes through the door policy."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from identity import door_eval
from identity.door_eval import (
    GUESS_PROBABILITY,
    DoorCounts,
    evaluate_doors,
    format_door_report,
)
from identity.door_policy import DoorPolicy
from identity.face_eval import EncodedPhoto
from tests.identity.faces import FACES, requires_faces
from tests.identity.fakes import FakeEncoder
from tests.identity.test_face_eval import TINTS, tinted_photo

# Round figures, independent of the calibrated defaults; no tightening, so that the
# zones are the same at every waiting count.
OPEN, CONFIRM = {"open_threshold": 0.35, "open_margin": 0.06}, {"confirm_threshold": 0.45}
POLICY = DoorPolicy(mode="grey_zone", **OPEN, **CONFIRM, tighten_per_doubling=0.0)


def photo(person: str, n: int, vector: np.ndarray) -> EncodedPhoto:
    return EncodedPhoto(person, f"{person}/{n}.jpg", vector, 1.0)


def point(axis: int, offset: float = 0.0, offset_axis: int = 127) -> np.ndarray:
    """A person at 1.0 along `axis` (persons are 1.41 apart), moved `offset` along another."""
    vector = np.zeros(128)
    vector[axis] = 1.0
    vector[offset_axis] += offset
    return vector


@pytest.fixture
def photos() -> list[EncodedPhoto]:
    # Six recipients whose two photos are 0.1 apart: they open alone. "grey" has photos 0.4
    # apart: only the confirmation lets them in, and only because their probe is not among
    # their templates (leave-one-out). "loner" has one photo and is only ever a stranger.
    found = []
    for axis, person in enumerate("abcdef"):
        found += [photo(person, 1, point(axis)), photo(person, 2, point(axis, 0.1))]
    found += [photo("grey", 1, point(10)), photo("grey", 2, point(10, 0.4))]
    found.append(photo("loner", 1, point(20)))
    return found


def run(photos: list[EncodedPhoto], **options: object) -> door_eval.DoorReport:
    defaults: dict[str, object] = {
        "policy": POLICY,
        "match_threshold": 0.44,
        "match_margin": 0.08,
        "waiting_counts": (1, 3),
        "cabinets": 300,
        "seed": 7,
    }
    return evaluate_doors(photos, **{**defaults, **options})  # type: ignore[arg-type]


def test_every_cabinet_is_counted_once_and_the_rates_follow_the_counts(
    photos: list[EncodedPhoto],
) -> None:
    report = run(photos)
    assert report.configured is not None
    assert (report.persons, report.photos) == (8, 15)
    for row in report.configured.rows:
        outcomes = row.own_open + row.own_confirm + row.refused + row.wrong_open + row.wrong_confirm
        assert outcomes == row.cabinets == 300
        assert row.face_alone == row.own_open / 300
        assert row.face_or_confirm == (row.own_open + row.own_confirm) / 300
        assert row.no_decision == row.refused / 300
        # Strangers are far from everyone: no door, no confirmation.
        assert row.stranger_open == row.stranger_confirm == 0
        # "grey" is the recipient in about 1 of 7 cabinets, and gets in only by confirming.
        assert row.own_confirm > 0
        assert row.own_open + row.own_confirm == 300


def test_a_look_alike_stranger_is_counted_by_what_they_know() -> None:
    # "twin" is 0.40 from "a": within the confirm zone of a, never within the open zone.
    found = [photo("a", 1, point(0)), photo("a", 2, point(0, 0.1))]
    found += [photo("b", 1, point(1)), photo("b", 2, point(1, 0.1))]
    found += [photo("twin", 1, point(0, 0.4, offset_axis=126))]
    report = run(found, waiting_counts=(1,), cabinets=400)
    assert report.configured is not None
    (row,) = report.configured.rows
    assert row.stranger_open == 0
    # At one waiting, the twin is a stranger whenever "a" waits (about half the cabinets),
    # and "a" is then the only recipient, hence the target.
    assert 0 < row.stranger_confirm == row.stranger_confirm_target < 400
    assert row.stranger_without_digits == pytest.approx(
        row.stranger_confirm * GUESS_PROBABILITY / 400
    )
    assert row.stranger_with_target_digits == row.stranger_with_all_digits
    assert row.stranger_with_all_digits == row.stranger_confirm / 400


def test_the_rates_of_guesses_and_targets() -> None:
    row = DoorCounts(
        waiting=10,
        cabinets=1000,
        wrong_open=1,
        wrong_confirm=20,
        stranger_open=2,
        stranger_confirm=50,
        stranger_confirm_target=5,
    )
    assert row.wrong_door == pytest.approx((1 + 20e-4) / 1000)
    assert row.stranger_without_digits == pytest.approx((2 + 50e-4) / 1000)
    assert row.stranger_with_target_digits == pytest.approx((2 + 5 + 45e-4) / 1000)
    assert row.stranger_with_all_digits == pytest.approx(52 / 1000)
    assert DoorCounts(waiting=1).face_alone == 0.0


def test_cabinets_are_drawn_reproducibly_from_the_seed(photos: list[EncodedPhoto]) -> None:
    first = format_door_report(run(photos))
    assert format_door_report(run(photos)) == first
    assert format_door_report(run(photos, seed=8)) != first
    # A waiting count's cabinets do not depend on the other counts asked for.
    alone = run(photos, waiting_counts=(3,))
    both = run(photos)
    assert alone.configured is not None and both.configured is not None
    assert alone.configured.rows[0] == both.configured.rows[1]


def test_every_scan_goes_through_the_door_policy(
    photos: list[EncodedPhoto], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = door_eval.door_decide

    def spy(**kwargs: object) -> object:
        calls.append(kwargs["waiting"])  # type: ignore[arg-type]
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(door_eval, "door_decide", spy)
    report = run(photos, cabinets=50)
    policies = 1 + len(report.others)
    # Two scans (the recipient's and the stranger's) per cabinet, count and policy.
    assert len(calls) == 2 * 50 * 2 * policies
    assert sorted(set(calls)) == [1, 3]


def test_the_modes_change_the_outcomes_as_the_policy_says(photos: list[EncodedPhoto]) -> None:
    report = run(photos)
    by_label = {r.label: r for r in report.others}
    never, always = by_label["mode never"], by_label["mode always_confirm"]
    assert all(row.own_confirm == row.stranger_confirm == 0 for row in never.rows)
    assert all(row.own_open == 0 for row in always.rows)
    assert report.configured is not None
    for configured, strict in zip(report.configured.rows, never.rows, strict=True):
        # "grey" needs the confirmation: in never mode they are refused.
        assert strict.refused == configured.own_confirm
    labels = [r.label for r in report.others]
    assert labels[:4] == [
        "thresholds -0.04",
        "thresholds -0.02",
        "thresholds +0.02",
        "thresholds +0.04",
    ]


def test_a_waiting_count_without_room_for_a_stranger_is_skipped(
    photos: list[EncodedPhoto],
) -> None:
    report = run(photos, waiting_counts=(3, 8))
    assert report.skipped == [8]
    assert report.configured is not None
    assert [row.waiting for row in report.configured.rows] == [3]
    assert "Not enough persons for 8 waiting" in format_door_report(report)


def test_the_table_reads_with_counts_beside_the_rates(photos: list[EncodedPhoto]) -> None:
    text = format_door_report(run(photos))
    assert "300 simulated cabinets per waiting count, seed 7" in text
    assert "configured: mode grey_zone; open within 0.350" in text
    assert "| waiting | cabinets | own door, face alone |" in text
    assert "| 1 | 300 |" in text
    assert "| 0.000% (0+0c) |" in text


@pytest.fixture
def tinted(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for person, tint in TINTS.items():
        (root / person).mkdir(parents=True)
        for seed in (1, 2):
            (root / person / f"{seed}.png").write_bytes(tinted_photo(tint, seed))
    return root


def test_the_command_prints_the_door_table_and_reuses_its_cache(
    tinted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from identity.management.commands import face_eval as command

    encoder = FakeEncoder()
    monkeypatch.setattr(command, "face_encoder", lambda: encoder)
    cache = tmp_path / "cache" / "encodings.json"
    args = [str(tinted), "--cache", str(cache), "--waiting", "1,2", "--cabinets", "40"]
    out = StringIO()
    call_command("face_eval", *args, "--seed", "3", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "Photos: 6 found, 6 used" in text
    assert "At the door: 40 simulated cabinets per waiting count, seed 3" in text
    assert "configured: mode grey_zone" in text
    assert "| 2 | 40 |" in text
    assert cache.is_file()
    encoded = len(encoder.encoded)
    assert encoded == 6

    again = StringIO()
    call_command("face_eval", *args, "--seed", "3", stdout=again, stderr=StringIO())
    assert len(encoder.encoded) == encoded
    assert again.getvalue() == text

    quiet = StringIO()
    call_command("face_eval", *args, "--no-door", stdout=quiet, stderr=StringIO())
    assert "At the door" not in quiet.getvalue()


@pytest.mark.parametrize(
    "bad",
    [
        ["--waiting", "1,x"],
        ["--waiting", "0"],
        ["--cabinets", "0"],
        ["--door-open-threshold", "0.5", "--door-confirm-threshold", "0.4"],
    ],
)
def test_the_command_refuses_bad_options(tinted: Path, bad: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("face_eval", str(tinted), *bad, stdout=StringIO(), stderr=StringIO())


# Five lfw-dev people with 3-4 usable photos each, so that every one can be a recipient.
LFW_SUBSET = ("Hun_Sen", "Lee_Hoi-chang", "Susilo_Bambang_Yudhoyono", "Wu_Yi", "Yu_Shyi-kun")


@requires_faces
def test_the_command_on_real_lfw_dev_photos_goes_through_the_door_policy(
    tmp_path: Path,
) -> None:
    # Links, not copies: the photos stay in ../shared.
    subset = tmp_path / "lfw-subset"
    for person in LFW_SUBSET:
        (subset / person).mkdir(parents=True)
        for source in sorted((FACES / "lfw-dev" / person).glob("*.jpg")):
            (subset / person / source.name).symlink_to(source)
    out = StringIO()
    call_command(
        "face_eval",
        str(subset),
        "--waiting",
        "1,3",
        "--cabinets",
        "200",
        stdout=out,
        stderr=StringIO(),
    )
    text = out.getvalue()
    assert "5 persons" in text
    table = [line for line in text.splitlines() if line.startswith(("| 1 | 200 |", "| 3 | 200 |"))]
    # The configured policy and six others, at two waiting counts each.
    assert len(table) == 2 * 7
    for line in table:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        own_open, own_any, refused, wrong = (bracket(cell) for cell in cells[2:6])
        assert own_open[0] <= own_any[0]
        # Every cabinet's recipient ends in exactly one outcome.
        assert own_any[0] + refused[0] + sum(wrong) == 200


def bracket(cell: str) -> list[int]:
    """The counts in a cell such as "0.550% (0+11t)": [0, 11]."""
    inside = cell.split("(")[1].rstrip(")")
    return [int(part.rstrip("ct")) for part in inside.split("+")]


def _percent(cell: str) -> float:
    return float(cell.split("%")[0])


@requires_faces
def test_the_shipped_policy_meets_issue_11s_goals_on_lfw_dev_at_10_waiting() -> None:
    """The acceptance figures of docs/face-calibration.md, re-measured with the shipped
    settings (10-jitter encodings, the FACE_DOOR_* defaults) through the same command: at 10
    waiting recipients a stranger who does not know the digits opens a door in at most 0.1%
    of attempts, one who knows the target's digits in at most 1%, and a waiting recipient
    gets in (face, or face plus confirmation) in at least 97%. Slow (~1 min: 66 photos at 10
    jitters)."""
    out = StringIO()
    call_command(
        "face_eval",
        str(FACES / "lfw-dev"),
        "--waiting",
        "10",
        "--cabinets",
        "2000",
        "--seed",
        "2026",
        stdout=out,
        stderr=StringIO(),
    )
    text = out.getvalue()
    assert "10 jitters" in text
    configured = text[text.index("configured: ") :]
    row = next(line for line in configured.splitlines() if line.startswith("| 10 | 2000 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    own_any, wrong = _percent(cells[3]), _percent(cells[5])
    no_digits, target_digits = _percent(cells[6]), _percent(cells[7])
    assert own_any >= 97.0, row
    assert no_digits <= 0.1, row
    assert target_digits <= 1.0, row
    assert wrong == 0.0, row
