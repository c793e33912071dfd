"""What happens at the door: simulated cabinets drawn from labelled, encoded photos, every
scan decided by the production `match_probe` and `door_decide`.

The door half of `manage.py face_eval`. For each number of waiting recipients, `cabinets`
cabinets are drawn with a seed (so a run is reproducible); in each one:

- a waiting recipient with at least two photos scans one of them; their templates are their
  other photos (leave-one-out, at most MAX_TEMPLATES_PER_PERSON), everybody else's templates
  are their photos;
- a stranger, a person not waiting there, scans one of their photos. A stranger who does not
  know the digits passes a confirmation with probability 1/10,000 (four digits, one try); one
  who knows the digits of one waiting recipient (their target, drawn at random, e.g. a
  neighbour) passes it when the face was matched to that recipient; the worst case is a
  stranger who knows every waiting recipient's digits.

Every rate is a count over the drawn cabinets, printed beside its count; expected values
(the 1/10,000 guesses) are added as fractions of a success.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from identity.door_policy import DoorPolicy, door_decide
from identity.face_eval import EncodedPhoto
from identity.matching import MAX_TEMPLATES_PER_PERSON, Candidate, MatchDecision, match_probe

DEFAULT_WAITING: tuple[int, ...] = (1, 3, 10, 20)
DEFAULT_CABINETS = 2000
DEFAULT_SEED = 2026
# Four digits, one try.
GUESS_PROBABILITY = 1e-4
# Other policies reported beside the configured one: both thresholds moved by these steps.
DEFAULT_THRESHOLD_STEPS: tuple[float, ...] = (-0.04, -0.02, 0.02, 0.04)


@dataclass(frozen=True)
class DoorCounts:
    """Outcomes of `cabinets` simulated cabinets at one waiting count, under one policy."""

    waiting: int
    cabinets: int = 0
    # The recipient's own door: opened on the face alone, or after a confirmation asked of
    # them (they know their digits).
    own_open: int = 0
    own_confirm: int = 0
    # Refused: the recipient uses the pickup code.
    refused: int = 0
    # Another recipient's door opened on the face alone; a confirmation asked of another
    # recipient (the right person must guess that one's digits).
    wrong_open: int = 0
    wrong_confirm: int = 0
    stranger_open: int = 0
    stranger_confirm: int = 0
    # Of those confirmations, the ones asked of the stranger's target.
    stranger_confirm_target: int = 0

    def rate(self, successes: float) -> float:
        return successes / self.cabinets if self.cabinets else 0.0

    @property
    def face_alone(self) -> float:
        return self.rate(self.own_open)

    @property
    def face_or_confirm(self) -> float:
        return self.rate(self.own_open + self.own_confirm)

    @property
    def no_decision(self) -> float:
        return self.rate(self.refused)

    @property
    def wrong_door(self) -> float:
        return self.rate(self.wrong_open + self.wrong_confirm * GUESS_PROBABILITY)

    @property
    def stranger_without_digits(self) -> float:
        return self.rate(self.stranger_open + self.stranger_confirm * GUESS_PROBABILITY)

    @property
    def stranger_with_target_digits(self) -> float:
        others = self.stranger_confirm - self.stranger_confirm_target
        return self.rate(
            self.stranger_open + self.stranger_confirm_target + others * GUESS_PROBABILITY
        )

    @property
    def stranger_with_all_digits(self) -> float:
        return self.rate(self.stranger_open + self.stranger_confirm)


@dataclass(frozen=True)
class PolicyRun:
    label: str
    policy: DoorPolicy
    rows: tuple[DoorCounts, ...]


@dataclass
class DoorReport:
    seed: int
    cabinets: int
    match_threshold: float
    match_margin: float
    persons: int
    photos: int
    configured: PolicyRun | None = None
    others: list[PolicyRun] = field(default_factory=list)
    # Waiting counts that could not be simulated (not enough persons for a stranger).
    skipped: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Scan:
    """One drawn cabinet: both scans' match decisions, computed once for every policy."""

    waiting: int
    recipient: str
    recipient_match: MatchDecision
    target: str
    stranger_match: MatchDecision


def threshold_variants(
    policy: DoorPolicy, steps: Sequence[float] = DEFAULT_THRESHOLD_STEPS
) -> list[tuple[str, DoorPolicy]]:
    """The configured policy with both thresholds moved by each step, and in the other modes."""
    variants = [
        (
            f"thresholds {step:+.2f}",
            replace(
                policy,
                open_threshold=max(policy.open_threshold + step, 0.0),
                confirm_threshold=max(policy.confirm_threshold + step, 0.0),
            ),
        )
        for step in steps
    ]
    variants += [
        (f"mode {mode}", replace(policy, mode=mode))
        for mode in ("never", "always_confirm", "grey_zone")
        if mode != policy.mode
    ]
    return variants


def evaluate_doors(
    photos: Sequence[EncodedPhoto],
    *,
    policy: DoorPolicy,
    match_threshold: float,
    match_margin: float,
    waiting_counts: Sequence[int] = DEFAULT_WAITING,
    cabinets: int = DEFAULT_CABINETS,
    seed: int = DEFAULT_SEED,
    variants: Sequence[tuple[str, DoorPolicy]] | None = None,
) -> DoorReport:
    by_person: dict[str, list[EncodedPhoto]] = {}
    for photo in photos:
        by_person.setdefault(photo.person, []).append(photo)
    report = DoorReport(
        seed=seed,
        cabinets=cabinets,
        match_threshold=match_threshold,
        match_margin=match_margin,
        persons=len(by_person),
        photos=len(photos),
    )
    scans: dict[int, list[_Scan]] = {}
    for waiting in waiting_counts:
        drawn = _draw_cabinets(
            by_person,
            waiting=waiting,
            cabinets=cabinets,
            # One stream per waiting count, so adding a count does not change the others.
            rng=random.Random(f"{seed}:{waiting}"),
            threshold=match_threshold,
            margin=match_margin,
        )
        if drawn is None:
            report.skipped.append(waiting)
        else:
            scans[waiting] = drawn
    report.configured = _run("configured", policy, scans)
    if variants is None:
        variants = threshold_variants(policy)
    report.others = [_run(label, variant, scans) for label, variant in variants]
    return report


def _draw_cabinets(
    by_person: dict[str, list[EncodedPhoto]],
    *,
    waiting: int,
    cabinets: int,
    rng: random.Random,
    threshold: float,
    margin: float,
) -> list[_Scan] | None:
    persons = sorted(by_person)
    recipients = [person for person in persons if len(by_person[person]) >= 2]
    # A cabinet needs `waiting` recipients and one stranger besides.
    if waiting < 1 or not recipients or len(persons) < waiting + 1:
        return None
    drawn: list[_Scan] = []
    for _ in range(cabinets):
        recipient = rng.choice(recipients)
        others = [person for person in persons if person != recipient]
        present = [recipient, *rng.sample(others, waiting - 1)]
        probe = rng.choice(by_person[recipient])
        recipient_match = match_probe(
            probe.encoding,
            _candidates(by_person, present, leave_out=probe),
            threshold=threshold,
            margin=margin,
        )
        stranger = rng.choice([person for person in persons if person not in present])
        stranger_probe = rng.choice(by_person[stranger])
        target = rng.choice(present)
        stranger_match = match_probe(
            stranger_probe.encoding,
            _candidates(by_person, present, leave_out=None),
            threshold=threshold,
            margin=margin,
        )
        drawn.append(_Scan(waiting, recipient, recipient_match, target, stranger_match))
    return drawn


def _candidates(
    by_person: dict[str, list[EncodedPhoto]],
    present: Sequence[str],
    *,
    leave_out: EncodedPhoto | None,
) -> list[Candidate]:
    return [
        Candidate(
            key=person,
            encodings=[photo.encoding for photo in by_person[person] if photo is not leave_out][
                :MAX_TEMPLATES_PER_PERSON
            ],
        )
        for person in present
    ]


def _run(label: str, policy: DoorPolicy, scans: dict[int, list[_Scan]]) -> PolicyRun:
    return PolicyRun(
        label=label,
        policy=policy,
        rows=tuple(_count(waiting, drawn, policy) for waiting, drawn in scans.items()),
    )


def _count(waiting: int, drawn: Sequence[_Scan], policy: DoorPolicy) -> DoorCounts:
    counts = dict.fromkeys(
        (
            "own_open",
            "own_confirm",
            "refused",
            "wrong_open",
            "wrong_confirm",
            "stranger_open",
            "stranger_confirm",
            "stranger_confirm_target",
        ),
        0,
    )
    for scan in drawn:
        own = door_decide(match=scan.recipient_match, waiting=waiting, live=True, policy=policy)
        if own.action == "refuse":
            counts["refused"] += 1
        else:
            # On open the door is best_key's; on confirm the digits are nearest_key's.
            person = (
                scan.recipient_match.best_key
                if own.action == "open"
                else scan.recipient_match.nearest_key
            )
            mine = person == scan.recipient
            counts[f"{'own' if mine else 'wrong'}_{own.action}"] += 1
        theirs = door_decide(match=scan.stranger_match, waiting=waiting, live=True, policy=policy)
        if theirs.action == "open":
            counts["stranger_open"] += 1
        elif theirs.action == "confirm":
            counts["stranger_confirm"] += 1
            if scan.stranger_match.nearest_key == scan.target:
                counts["stranger_confirm_target"] += 1
    return DoorCounts(waiting=waiting, cabinets=len(drawn), **counts)


def _pct(value: float) -> str:
    return f"{value * 100:.3f}%"


def _policy_line(policy: DoorPolicy) -> str:
    return (
        f"mode {policy.mode}; open within {policy.open_threshold:.3f}, margin "
        f"{policy.open_margin:.3f}; confirm within {policy.confirm_threshold:.3f}, margin "
        f"{policy.confirm_margin:.3f}; thresholds lowered by {policy.tighten_per_doubling:.3f} "
        "per doubling of the waiting count"
    )


HEADER = (
    "| waiting | cabinets | own door, face alone | own door, face or confirm | no decision "
    "| wrong door | stranger, no digits | stranger, target's digits | stranger, all digits |"
)


def _row(row: DoorCounts) -> str:
    cells = [
        str(row.waiting),
        str(row.cabinets),
        f"{_pct(row.face_alone)} ({row.own_open})",
        f"{_pct(row.face_or_confirm)} ({row.own_open + row.own_confirm})",
        f"{_pct(row.no_decision)} ({row.refused})",
        f"{_pct(row.wrong_door)} ({row.wrong_open}+{row.wrong_confirm}c)",
        f"{_pct(row.stranger_without_digits)} ({row.stranger_open}+{row.stranger_confirm}c)",
        f"{_pct(row.stranger_with_target_digits)} "
        f"({row.stranger_open}+{row.stranger_confirm_target}t)",
        f"{_pct(row.stranger_with_all_digits)}",
    ]
    return "| " + " | ".join(cells) + " |"


def format_door_report(report: DoorReport) -> str:
    lines = [
        (
            f"At the door: {report.cabinets} simulated cabinets per waiting count, seed "
            f"{report.seed}, from {report.photos} photos of {report.persons} persons; matcher "
            f"threshold {report.match_threshold:.3f}, margin {report.match_margin:.3f}; "
            "liveness assumed passed"
        ),
        (
            "(counts in brackets: n = opened, +Nc = confirmations asked, +Nt = of them asked "
            "of the stranger's target; a confirmation is guessed with p = 1/10,000)"
        ),
    ]
    if report.skipped:
        skipped = ", ".join(str(n) for n in report.skipped)
        lines.append(f"Not enough persons for {skipped} waiting and a stranger: skipped")
    runs = [run for run in (report.configured, *report.others) if run is not None]
    for run in runs:
        lines += ["", f"{run.label}: {_policy_line(run.policy)}", "", HEADER]
        lines.append("|" + "---|" * 9)
        lines += [_row(row) for row in run.rows]
    return "\n".join(lines) + "\n"
