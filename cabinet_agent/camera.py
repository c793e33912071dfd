"""Camera seam: the agent asks for one JPEG; FileCamera replays images from disk."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

JPEG_MAGIC = b"\xff\xd8\xff"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg"})


class CameraError(RuntimeError):
    pass


class Camera(Protocol):
    async def capture(self, light_on: bool) -> bytes:
        """Take one picture, with the front light on or off, and return JPEG bytes."""
        ...


class FileCamera:
    """Serves the JPEG at `path`, or cycles through the JPEGs of a directory in name order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.light_flags: list[bool] = []
        self._next = 0

    async def capture(self, light_on: bool) -> bytes:
        self.light_flags.append(light_on)
        return await asyncio.to_thread(self._read_next)

    def _read_next(self) -> bytes:
        if self.path.is_dir():
            images = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise CameraError(f"no JPEG images in {self.path}")
            image = images[self._next % len(images)]
            self._next += 1
        else:
            image = self.path
        try:
            data = image.read_bytes()
        except OSError as exc:
            raise CameraError(f"cannot read {image}: {exc}") from exc
        if not data.startswith(JPEG_MAGIC):
            raise CameraError(f"{image} is not a JPEG")
        return data
