from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from identity.embeddings import get_default_encoder
from identity.face_eval import EvalReport, evaluate_directory, format_report
from identity.matching import DEFAULT_MATCH_THRESHOLD
from tests.identity.faces import FACES, requires_faces
from tests.identity.fakes import FakeEncoder

TINTS = {"red": (200, 90, 90), "blue": (90, 90, 200), "green": (90, 170, 90)}


def tinted_photo(tint: tuple[int, int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.normal(0, 30, size=(30, 30)), np.ones((10, 10)))[:, :, None]
    rgb = np.clip(np.array(tint, dtype=np.float64) + blocks, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def people(tmp_path: Path) -> Path:
    for person in TINTS:
        (tmp_path / person).mkdir()
    for seed in (1, 2):
        (tmp_path / "red" / f"{seed}.png").write_bytes(tinted_photo(TINTS["red"], seed))
        (tmp_path / "blue" / f"{seed}.png").write_bytes(tinted_photo(TINTS["blue"], seed + 10))
    (tmp_path / "red" / "copy-of-1.png").write_bytes((tmp_path / "red" / "1.png").read_bytes())
    (tmp_path / "red" / "notes.txt").write_text("not a photo")
    (tmp_path / "green" / "1.png").write_bytes(tinted_photo(TINTS["green"], 21))
    (tmp_path / "loose-file.png").write_bytes(tinted_photo(TINTS["green"], 22))
    return tmp_path


def test_it_counts_photos_refusals_duplicates_and_pairs(people: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    report = evaluate_directory(
        people,
        encoder=FakeEncoder(),
        threshold=0.42,
        margin=0.08,
        progress=lambda done, total, name: seen.append((done, total, name)),
    )
    assert report.photos_total == 7
    assert report.duplicates_skipped == 1
    assert report.refused == {"unsupported_type": 1}
    assert report.refused_files == [("red/notes.txt", "unsupported_type")]
    assert report.photos_used == 5
    assert report.persons == 3
    assert report.same.count == 2
    assert report.different.count == 8
    assert report.frr == 0.0
    assert report.far == 0.0
    assert [done for done, _, _ in seen] == list(range(1, 8))
    assert {total for _, total, _ in seen} == {7}


def test_identification_is_leave_one_out_with_the_margin_rule(people: Path) -> None:
    report = evaluate_directory(people, encoder=FakeEncoder(), threshold=0.42, margin=0.08)
    ident = report.identification
    assert (ident.genuine_probes, ident.correct, ident.wrong, ident.no_decision) == (4, 4, 0, 0)
    assert (ident.impostor_probes, ident.impostor_rejected, ident.impostor_accepted) == (1, 1, 0)

    # With a threshold loose enough to reach another tint, the lone green photo is
    # wrongly taken for someone.
    loose = evaluate_directory(people, encoder=FakeEncoder(), threshold=0.9, margin=0.0)
    assert loose.identification.impostor_accepted == 1
    assert loose.far is not None and loose.far > 0


def test_the_threshold_table_includes_the_configured_value_in_order(people: Path) -> None:
    report = evaluate_directory(
        people, encoder=FakeEncoder(), threshold=0.41, other_thresholds=(0.6, 0.35)
    )
    assert [row.threshold for row in report.table] == [0.35, 0.41, 0.6]
    assert report.table[-1].false_accepts >= report.table[0].false_accepts


def test_the_report_reads_as_plain_text(people: Path) -> None:
    text = format_report(evaluate_directory(people, encoder=FakeEncoder()))
    assert "5 used, 1 refused, 1 duplicates skipped; 3 persons" in text
    assert "refused unsupported_type: 1" in text
    assert "<- configured" in text
    assert "4 correct, 0 wrong, 0 no decision" in text


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        evaluate_directory(tmp_path / "absent", encoder=FakeEncoder())


@pytest.fixture(scope="module")
def knn_train_report() -> EvalReport:
    return evaluate_directory(
        FACES / "examples" / "knn_examples" / "train", encoder=get_default_encoder()
    )


@requires_faces
def test_the_real_training_set_is_evaluated_without_false_accepts(
    knn_train_report: EvalReport,
) -> None:
    report = knn_train_report
    assert report.photos_total == 9
    assert report.photos_used == 9
    assert report.persons == 5
    assert report.refused == {}
    assert report.same.count == 4
    assert report.different.count == 32
    assert report.threshold == DEFAULT_MATCH_THRESHOLD
    assert report.far == 0.0
    assert report.identification.wrong == 0
    assert report.identification.impostor_accepted == 0
    assert report.identification.impostor_probes == 1
    assert report.different.minimum is not None
    assert report.different.minimum > DEFAULT_MATCH_THRESHOLD
    assert "dlib_face_recognition_resnet_model_v1" in format_report(report)
