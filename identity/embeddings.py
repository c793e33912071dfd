"""The face model behind a small Protocol, free of Django.

Services depend on `FaceEncoder`, never on dlib: tests use a fake, and another model can
replace dlib later. `face_recognition` (and with it dlib and ~100 MB of model weights) is
imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import threading
import warnings
from functools import lru_cache
from importlib import metadata
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from types import ModuleType

Box = tuple[int, int, int, int]
"""(top, right, bottom, left) in pixels of the image it was found in, like face_recognition."""

ENCODING_SIZE = 128


@runtime_checkable
class FaceEncoder(Protocol):
    model_name: str
    model_version: str

    def locate(self, rgb: np.ndarray) -> list[Box]:
        """Faces in an HxWx3 uint8 RGB image."""
        ...

    def encode(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        """The (128,) float64 encoding of the face at `box` in `rgb`."""
        ...


def _package_version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


class DlibEncoder:
    """HOG detector and dlib's ResNet encoder, through face_recognition."""

    model_name = "dlib_face_recognition_resnet_model_v1"

    def __init__(
        self,
        *,
        upsample: int = 1,
        landmarks: Literal["small", "large"] = "large",
        num_jitters: int = 1,
    ) -> None:
        if landmarks not in ("small", "large"):
            raise ValueError(f"landmarks must be 'small' or 'large', not {landmarks!r}")
        self.upsample = upsample
        self.landmarks = landmarks
        self.num_jitters = num_jitters
        # Stored encodings are only comparable with encodings from the same weights and the
        # same landmark alignment, so both are part of the version.
        self.model_version = (
            f"face_recognition_models {_package_version('face_recognition_models')}"
            f"; dlib {_package_version('dlib-bin', 'dlib')}"
            f"; landmarks {landmarks}"
        )

    def locate(self, rgb: np.ndarray) -> list[Box]:
        fr = _face_recognition()
        boxes = fr.face_locations(
            _as_rgb8(rgb), number_of_times_to_upsample=self.upsample, model="hog"
        )
        return [(int(t), int(r), int(b), int(lft)) for t, r, b, lft in boxes]

    def encode(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        fr = _face_recognition()
        encodings = fr.face_encodings(
            _as_rgb8(rgb),
            known_face_locations=[box],
            num_jitters=self.num_jitters,
            model=self.landmarks,
        )
        encoding = np.asarray(encodings[0], dtype=np.float64)
        if encoding.shape != (ENCODING_SIZE,):
            raise ValueError(f"unexpected encoding shape {encoding.shape}")
        return encoding


def _as_rgb8(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 array, got {rgb.dtype} {rgb.shape}")
    # dlib refuses non-contiguous views (crops, flips).
    return np.ascontiguousarray(rgb)


_import_lock = threading.Lock()


def _face_recognition() -> ModuleType:
    with _import_lock:
        from PIL import ImageFile

        # face_recognition sets this process-wide flag on import, which would make Pillow
        # accept half-uploaded photos everywhere in the process; put it back.
        load_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
        with warnings.catch_warnings():
            # face_recognition_models 0.3.0 imports pkg_resources, deprecated in setuptools.
            warnings.filterwarnings(
                "ignore", message="pkg_resources is deprecated", category=UserWarning
            )
            import face_recognition
        ImageFile.LOAD_TRUNCATED_IMAGES = load_truncated

        return face_recognition


def get_default_encoder(*, num_jitters: int = 1) -> FaceEncoder:
    """One shared encoder per jitter count."""
    return _cached_encoder(num_jitters)


@lru_cache(maxsize=4)
def _cached_encoder(num_jitters: int) -> FaceEncoder:
    return DlibEncoder(num_jitters=num_jitters)
