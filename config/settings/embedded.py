"""Secrets and files of the embedded default (`./scripts/run.sh`), kept in var/: generated
once per install, readable by their owner only. Without them every install would share a
public default key, and a copy of its database would give up templates and codes."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path


def owner_only_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def install_secret(path: Path, *, nbytes: int = 48) -> str:
    """The secret kept in `path`, created (mode 0600) on first use. Written to a private
    temporary file first and linked into place: of processes starting at once, one link
    wins and every one of them reads the same, complete secret."""
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as file:  # mkstemp: mode 0600
                file.write(secrets.token_urlsafe(nbytes))
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path.read_text().strip()


def owner_only_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if missing (SQLite accepts an empty file as a new
    database, and gives its journal the same mode), or take group and other access away."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
