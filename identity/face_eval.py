"""Evaluate the face pipeline and matching policy on a directory of labelled photos.

The pure core of `manage.py face_eval DIR`. Layout: DIR/<person>/<photo>. Every photo goes
through the same `process_photo` and every decision through the same `match_probe` that
the lockers use, so the figures describe production behaviour, not a variant of it.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from identity.embeddings import FaceEncoder
from identity.face_pipeline import (
    FaceRefused,
    PhotoLimits,
    QualityPolicy,
    process_photo,
)
from identity.matching import (
    DEFAULT_MATCH_MARGIN,
    DEFAULT_MATCH_THRESHOLD,
    Candidate,
    match_probe,
)

DEFAULT_OTHER_THRESHOLDS: tuple[float, ...] = (0.35, 0.38, 0.40, 0.42, 0.44, 0.45, 0.50, 0.55, 0.60)

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class EncodedPhoto:
    person: str
    name: str
    encoding: np.ndarray
    ms: float


@dataclass(frozen=True)
class DistanceStats:
    count: int
    minimum: float | None
    median: float | None
    maximum: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> DistanceStats:
        if not values:
            return cls(0, None, None, None)
        return cls(len(values), min(values), statistics.median(values), max(values))


@dataclass(frozen=True)
class ThresholdRow:
    threshold: float
    false_rejects: int
    false_accepts: int
    frr: float | None
    far: float | None


@dataclass(frozen=True)
class Identification:
    """Leave-one-out: each photo against all other photos, grouped by person."""

    genuine_probes: int = 0
    correct: int = 0
    wrong: int = 0
    no_decision: int = 0
    # Probes whose person has no other photo: the right answer is "nobody".
    impostor_probes: int = 0
    impostor_rejected: int = 0
    impostor_accepted: int = 0


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    distance: float


@dataclass
class EvalReport:
    directory: str
    threshold: float
    margin: float
    model: str
    persons: int = 0
    photos_total: int = 0
    photos_used: int = 0
    duplicates_skipped: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    refused_files: list[tuple[str, str]] = field(default_factory=list)
    same: DistanceStats = DistanceStats(0, None, None, None)
    different: DistanceStats = DistanceStats(0, None, None, None)
    frr: float | None = None
    far: float | None = None
    table: list[ThresholdRow] = field(default_factory=list)
    identification: Identification = Identification()
    farthest_same: list[Pair] = field(default_factory=list)
    closest_different: list[Pair] = field(default_factory=list)
    ms_per_photo: float | None = None
    # The encoded photos themselves, for the door simulation (identity.door_eval).
    photos: list[EncodedPhoto] = field(default_factory=list, repr=False)

    @property
    def photos_refused(self) -> int:
        return sum(self.refused.values())


class EncodingCache:
    """Encodings, or refusal codes, of photos by content hash under one model, in a JSON
    file, so that a calibration run with other policy figures does not recompute them.
    It holds face data: keep it out of the repository (under var/ or a temporary directory).
    """

    def __init__(self, path: str | Path, *, model: str) -> None:
        self.path = Path(path)
        self.model = model
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            stored = json.loads(self.path.read_text())
            if stored.get("model") == model:
                self.entries = stored.get("photos", {})

    def get(self, digest: str) -> FaceRefused | tuple[np.ndarray, float] | None:
        entry = self.entries.get(digest)
        if entry is None:
            return None
        if "refused" in entry:
            return FaceRefused(str(entry["refused"]))
        return np.asarray(entry["encoding"], dtype=np.float64), float(entry["ms"])

    def put(self, digest: str, outcome: FaceRefused | tuple[np.ndarray, float]) -> None:
        if isinstance(outcome, FaceRefused):
            self.entries[digest] = {"refused": outcome.code}
        else:
            self.entries[digest] = {"encoding": outcome[0].tolist(), "ms": outcome[1]}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"model": self.model, "photos": self.entries}))


def evaluate_directory(
    path: str | Path,
    *,
    encoder: FaceEncoder,
    threshold: float = DEFAULT_MATCH_THRESHOLD,
    margin: float = DEFAULT_MATCH_MARGIN,
    other_thresholds: Sequence[float] = DEFAULT_OTHER_THRESHOLDS,
    limits: PhotoLimits | None = None,
    quality: QualityPolicy | None = None,
    progress: Progress | None = None,
    cache: str | Path | None = None,
) -> EvalReport:
    limits = limits or PhotoLimits()
    quality = quality or QualityPolicy()
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(str(root))
    files = [
        (person_dir.name, photo)
        for person_dir in sorted(
            p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        for photo in sorted(
            p for p in person_dir.iterdir() if p.is_file() and not p.name.startswith(".")
        )
    ]
    report = EvalReport(
        directory=str(root),
        threshold=threshold,
        margin=margin,
        model=_model_label(encoder),
        photos_total=len(files),
    )

    store = EncodingCache(cache, model=report.model) if cache is not None else None
    seen: set[str] = set()
    used: list[EncodedPhoto] = []
    refused: Counter[str] = Counter()
    for done, (person, photo) in enumerate(files, start=1):
        name = f"{person}/{photo.name}"
        if progress is not None:
            progress(done, len(files), name)
        data = photo.read_bytes()
        # A copy of a photo would count as a perfect same-person pair.
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            report.duplicates_skipped += 1
            continue
        seen.add(digest)
        outcome = store.get(digest) if store is not None else None
        if outcome is None:
            outcome = _encode(data, encoder=encoder, limits=limits, quality=quality)
            if store is not None:
                store.put(digest, outcome)
        if isinstance(outcome, FaceRefused):
            refused[outcome.code] += 1
            report.refused_files.append((name, outcome.code))
            continue
        used.append(EncodedPhoto(person, name, *outcome))
    if store is not None:
        store.save()

    report.photos = used
    report.refused = dict(sorted(refused.items()))
    report.photos_used = len(used)
    report.persons = len({photo.person for photo in used})
    if used:
        report.ms_per_photo = statistics.fmean(photo.ms for photo in used)

    same: list[Pair] = []
    different: list[Pair] = []
    for i, first in enumerate(used):
        for second in used[i + 1 :]:
            pair = Pair(
                first.name, second.name, float(np.linalg.norm(first.encoding - second.encoding))
            )
            (same if first.person == second.person else different).append(pair)

    same_d = [p.distance for p in same]
    diff_d = [p.distance for p in different]
    report.same = DistanceStats.of(same_d)
    report.different = DistanceStats.of(diff_d)
    thresholds = sorted({threshold, *other_thresholds})
    report.table = [_threshold_row(t, same_d, diff_d) for t in thresholds]
    configured = next(row for row in report.table if row.threshold == threshold)
    report.frr, report.far = configured.frr, configured.far
    report.farthest_same = sorted(same, key=lambda p: p.distance, reverse=True)[:3]
    report.closest_different = sorted(different, key=lambda p: p.distance)[:3]
    report.identification = _identify(used, threshold=threshold, margin=margin)
    return report


def _model_label(encoder: FaceEncoder) -> str:
    # Jitters change the encodings (not their comparability), so the cache keys on them too.
    label = f"{getattr(encoder, 'model_name', '?')} ({getattr(encoder, 'model_version', '?')})"
    jitters = getattr(encoder, "num_jitters", None)
    return label if jitters is None else f"{label}; {jitters} jitters"


def _encode(
    data: bytes, *, encoder: FaceEncoder, limits: PhotoLimits, quality: QualityPolicy
) -> FaceRefused | tuple[np.ndarray, float]:
    started = time.perf_counter()
    try:
        result = process_photo(data, encoder=encoder, limits=limits, quality=quality)
    except FaceRefused as refusal:
        return refusal
    return result.encoding, (time.perf_counter() - started) * 1000


def _threshold_row(
    threshold: float, same: Sequence[float], different: Sequence[float]
) -> ThresholdRow:
    false_rejects = sum(d > threshold for d in same)
    false_accepts = sum(d <= threshold for d in different)
    return ThresholdRow(
        threshold=threshold,
        false_rejects=false_rejects,
        false_accepts=false_accepts,
        frr=false_rejects / len(same) if same else None,
        far=false_accepts / len(different) if different else None,
    )


def _identify(used: Sequence[EncodedPhoto], *, threshold: float, margin: float) -> Identification:
    counts: Counter[str] = Counter()
    for index, probe in enumerate(used):
        templates: dict[str, list[np.ndarray]] = {}
        for other_index, other in enumerate(used):
            if other_index != index:
                templates.setdefault(other.person, []).append(other.encoding)
        candidates = [
            Candidate(key=person, encodings=encodings) for person, encodings in templates.items()
        ]
        decision = match_probe(probe.encoding, candidates, threshold=threshold, margin=margin)
        if probe.person in templates:
            counts["genuine_probes"] += 1
            if not decision.is_match:
                counts["no_decision"] += 1
            elif decision.best_key == probe.person:
                counts["correct"] += 1
            else:
                counts["wrong"] += 1
        else:
            counts["impostor_probes"] += 1
            counts["impostor_accepted" if decision.is_match else "impostor_rejected"] += 1
    return Identification(**counts)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _stats_line(label: str, stats: DistanceStats) -> str:
    figures = "  ".join(f"{_num(v):>6}" for v in (stats.minimum, stats.median, stats.maximum))
    return f"  {label:<12}{stats.count:9d}  {figures}"


def format_report(report: EvalReport) -> str:
    lines = [
        f"Face evaluation of {report.directory}",
        f"Model: {report.model}",
        f"Policy: threshold {report.threshold:.3f}, margin {report.margin:.3f}",
        "",
        (
            f"Photos: {report.photos_total} found, {report.photos_used} used, "
            f"{report.photos_refused} refused, {report.duplicates_skipped} duplicates skipped; "
            f"{report.persons} persons"
        ),
    ]
    if report.ms_per_photo is not None:
        lines.append(f"Time per used photo: {report.ms_per_photo:.0f} ms")
    for code, count in report.refused.items():
        lines.append(f"  refused {code}: {count}")
    for name, code in report.refused_files:
        lines.append(f"    {name}: {code}")

    lines += [
        "",
        "Distances         pairs     min  median     max",
        _stats_line("same person", report.same),
        _stats_line("different", report.different),
        "",
        (
            f"At threshold {report.threshold:.3f}: false reject rate {_rate(report.frr)}, "
            f"false accept rate {_rate(report.far)}"
        ),
        "",
        "threshold  false rejects      FRR  false accepts      FAR",
    ]
    for row in report.table:
        marker = "  <- configured" if row.threshold == report.threshold else ""
        lines.append(
            f"  {row.threshold:.3f}  {row.false_rejects:13d}  {_rate(row.frr):>7}"
            f"  {row.false_accepts:13d}  {_rate(row.far):>7}{marker}"
        )

    ident = report.identification
    lines += [
        "",
        "Identification, leave-one-out, with the margin rule:",
        (
            f"  probes with another photo of the same person: {ident.genuine_probes}: "
            f"{ident.correct} correct, {ident.wrong} wrong, {ident.no_decision} no decision"
        ),
        (
            f"  probes of persons with no other photo: {ident.impostor_probes}: "
            f"{ident.impostor_rejected} rejected, {ident.impostor_accepted} wrongly accepted"
        ),
    ]
    if report.farthest_same:
        lines += ["", "Farthest same-person pairs:"]
        lines += [f"  {p.distance:.3f}  {p.a}  {p.b}" for p in report.farthest_same]
    if report.closest_different:
        lines += ["Closest different-person pairs:"]
        lines += [f"  {p.distance:.3f}  {p.a}  {p.b}" for p in report.closest_different]
    return "\n".join(lines) + "\n"
