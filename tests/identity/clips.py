"""Bursts built from the clips and photos in ../shared/faces/video (SOURCES.md there), and a
dlib landmark encoder that remembers what it computed for the whole test session: face work
is CPU-heavy, and many tests look at the same frames."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

from cabinet_agent.camera import video_frames_rgb
from identity.liveness import BurstFrame, DlibLandmarkEncoder, FaceObservation
from tests.identity.faces import FACES

VIDEO = FACES / "video"
GRID = VIDEO / "grid"
INTEL_FEMALE = VIDEO / "intel-sample-videos" / "head-pose-face-detection-female.gif"
SPOOF = VIDEO / "silent-face-anti-spoofing"

# SOURCES.md: the first frame of a blink seen by eye in each GRID clip that blinks.
GRID_BLINKS = {
    "bbaf2n": 42,
    "brbk7n": 21,
    "id2_vcd_swwp2s": 27,
    "lbax4n": 28,
    "lrwp9a": 35,
    "pwij3p": 34,
}
GRID_NO_BLINK = ("lbbc2a", "lwbsza", "sbia1a", "swiz3n")


class CachingEncoder:
    """DlibLandmarkEncoder, memoised on the pixels: the same frame is never analysed twice."""

    def __init__(self) -> None:
        self.inner = DlibLandmarkEncoder()
        self.model_version = self.inner.model_version
        self._observed: dict[str, list[FaceObservation]] = {}
        self._encoded: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    @staticmethod
    def _key(rgb: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()

    def observe(self, rgb: np.ndarray) -> list[FaceObservation]:
        key = self._key(rgb)
        if key not in self._observed:
            self._observed[key] = self.inner.observe(rgb)
        return self._observed[key]

    def encode(self, rgb: np.ndarray, face: FaceObservation) -> np.ndarray:
        key = (self._key(rgb), tuple(face.box))
        if key not in self._encoded:
            self._encoded[key] = self.inner.encode(rgb, face)
        return self._encoded[key]


@lru_cache(maxsize=1)
def session_encoder() -> CachingEncoder:
    return CachingEncoder()


@lru_cache(maxsize=16)
def clip_frames(path: str) -> tuple[tuple[np.ndarray, ...], float]:
    """Every frame of a clip as RGB, and its frame rate (the agent's reader)."""
    frames, fps = video_frames_rgb(path)
    return tuple(frames), fps


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=quality)
    return out.getvalue()


def grid_path(name: str) -> str:
    return str(GRID / f"{name}.mpg")


def clip_burst(path: str, indices: Sequence[int]) -> list[BurstFrame]:
    frames, fps = clip_frames(path)
    first = indices[0]
    return [BurstFrame(t_ms=round((i - first) * 1000 / fps), jpeg=jpeg(frames[i])) for i in indices]


def photo(path: str, max_side: int = 480) -> np.ndarray:
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    image.thumbnail((max_side, max_side))
    return np.asarray(image)


def held_print(rgb: np.ndarray, *, count: int = 10, shear: float = 0.0) -> list[np.ndarray]:
    """A still photo as a hand holds a print in front of the camera: tilted in and out of
    the picture's plane, shifted, scaled, optionally sheared (which moves the nose against
    the eyes the way a turn would), each frame one homography of the same picture."""
    import cv2

    height, width = rgb.shape[:2]
    out = []
    for i in range(count):
        t = i / (count - 1)
        angle = np.deg2rad(6 * np.sin(2 * np.pi * t))
        scale = 1 + 0.08 * t
        centre = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]])
        rotate = np.array(
            [
                [scale * np.cos(angle), -scale * np.sin(angle), 0],
                [scale * np.sin(angle), scale * np.cos(angle), 0],
                [0, 0, 1],
            ]
        )
        tilt = np.array([[1, shear * t, 0], [0, 1, 0], [0.0003 * np.sin(np.pi * t), 0.0002 * t, 1]])
        shift = np.array([[1, 0, width / 2 + 12 * t], [0, 1, height / 2 - 8 * t], [0, 0, 1]])
        matrix = shift @ tilt @ rotate @ centre
        out.append(
            cv2.warpPerspective(rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
        )
    return out


def still_burst(images: Sequence[np.ndarray], step_ms: int = 120) -> list[BurstFrame]:
    return [BurstFrame(t_ms=i * step_ms, jpeg=jpeg(rgb)) for i, rgb in enumerate(images)]
