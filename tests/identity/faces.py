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

_FACES_PRESENT = (FACES / "examples" / "obama.jpg").is_file()
_REQUIRED = os.environ.get("CI") == "true" or os.environ.get("REQUIRE_SERVICES") == "1"

# Locally the real-photo tests skip when ../shared/faces is absent; in CI they must run, so
# there the mark does nothing and a missing photo fails the test loudly.
requires_faces = pytest.mark.skipif(
    not _FACES_PRESENT and not _REQUIRED, reason=f"test photos not found in {FACES}"
)


def face_bytes(relative: str) -> bytes:
    return (FACES / relative).read_bytes()
