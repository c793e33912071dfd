"""Camera seam: the agent asks for one JPEG (FileCamera replays images from disk) or, in
protocol 1.2, for a burst of frames (VideoBurstCamera reads them from a video file)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from pathlib import Path
from typing import Any, Protocol

JPEG_MAGIC = b"\xff\xd8\xff"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg"})


class CameraError(RuntimeError):
    pass


def video_frames(path: str | Path) -> tuple[float, Generator[Any, None, None]]:
    """A video file's (or GIF's) frame rate and its frames, in order, as BGR arrays (opencv).
    The one reader of clips: the agent's VideoBurstCamera, the tests and bench/ use it."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise CameraError(f"cannot open video file {path}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0

    def frames() -> Generator[Any, None, None]:
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    return
                yield image
        finally:
            capture.release()

    return fps, frames()


def video_frames_rgb(path: str | Path) -> tuple[list[Any], float]:
    """Every frame of a clip as RGB arrays, and its frame rate."""
    import cv2

    fps, frames = video_frames(path)
    return [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in frames], fps


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


# --- bursts (protocol 1.2) -------------------------------------------------------------------

Burst = list[tuple[int, bytes]]
"""(t_ms from the first frame, JPEG bytes), in capture order."""


class BurstCamera(Protocol):
    async def burst(self, actions: list[str], light_on: bool) -> Burst:
        """Take a burst of frames while the person does `actions` (shown on the screen)."""
        ...


class FramesBurstCamera:
    """Serves bursts given in advance (tests, a fleet simulator): the next one each time."""

    def __init__(self, *bursts: Burst) -> None:
        self.bursts = list(bursts)
        self.asked: list[list[str]] = []

    async def burst(self, actions: list[str], light_on: bool) -> Burst:
        self.asked.append(list(actions))
        if not self.bursts:
            raise CameraError("no burst left to serve")
        return self.bursts.pop(0) if len(self.bursts) > 1 else self.bursts[0]


class VideoBurstCamera:
    """A burst read from a video file or a GIF (the simulator and the demo): `count` frames,
    every `step`-th from frame `start` (or from `starts[action]` for the first action asked),
    downscaled to at most `max_side` pixels and encoded as JPEG; timestamps from the file's
    frame times. Needs opencv (cv2)."""

    def __init__(
        self,
        path: str | Path,
        *,
        start: int = 0,
        step: int = 2,
        count: int = 16,
        starts: dict[str, int] | None = None,
        max_side: int = 640,
        quality: int = 85,
    ) -> None:
        self.path = Path(path)
        self.start, self.step, self.count = start, step, count
        self.starts = dict(starts or {})
        self.max_side, self.quality = max_side, quality

    async def burst(self, actions: list[str], light_on: bool) -> Burst:
        first = next((self.starts[a] for a in actions if a in self.starts), self.start)
        return await asyncio.to_thread(self.read, first)

    def read(self, first: int) -> Burst:
        if not self.path.is_file():
            raise CameraError(f"video file {self.path} not found")
        fps, images = video_frames(self.path)
        wanted = set(range(first, first + self.step * self.count, self.step))
        frames: Burst = []
        for index, image in enumerate(images):
            if index in wanted:
                frames.append((round((index - first) * 1000 / fps), self._jpeg(image)))
            if len(frames) == self.count:
                break
        images.close()
        if len(frames) < self.count:
            raise CameraError(f"{self.path} has too few frames from {first}")
        return frames

    def _jpeg(self, image: Any) -> bytes:
        import cv2

        height, width = image.shape[:2]
        scale = self.max_side / max(height, width)
        if scale < 1:
            image = cv2.resize(image, (round(width * scale), round(height * scale)))
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise CameraError("JPEG encoding failed")
        return bytes(data)
