"""Where the shared test photos live (see /work/shared/faces/SOURCES.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def faces_dir() -> Path:
    override = os.environ.get("FACES_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "faces"


FACES = faces_dir()

requires_faces = pytest.mark.skipif(
    not (FACES / "examples" / "obama.jpg").is_file(), reason=f"test photos not found in {FACES}"
)


def face_bytes(relative: str) -> bytes:
    return (FACES / relative).read_bytes()
