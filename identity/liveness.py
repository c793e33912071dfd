"""Liveness by challenge: is the burst of frames a cabinet sent one live person, in front of
the camera now, doing what they were asked? Pure functions over frames and landmarks; no
Django. dlib sits behind `LandmarkEncoder` (the same Protocol style as identity.embeddings),
so a fake can stand in and another model can replace it.

A burst passes when, in this order (the first failure is the refusal):

1. its shape is sound: 6 to 20 frames, timestamps strictly increasing over 1 to 3 s, no two
   frames with the same bytes (`bad_burst`, `frozen`);
2. every frame decodes and shows exactly one face (`unreadable_frame`, `no_face`,
   `several_faces`), and the face changes from frame to frame (`frozen`: a live face
   always moves a little; one picture re-encoded does not);
3. the face does not jump between frames, in place or in pose (`too_much_movement`);
4. the challenged motions happened: a blink is an eye aspect ratio (EAR) dip, relative to
   what the eyes of the burst's median frame would measure in that frame if the face were
   a flat picture moved by a homography (so a tilted print, whose eyes look narrower, does
   not count), below `blink_ratio` times the most open before and after it; a turn is a
   yaw change of at least `turn_min` in the asked direction (`no_blink`, `no_turn_left`,
   `no_turn_right`);
5. a head that turned is not a flat picture: the 68 landmarks of the two most different
   poses do not follow one planar homography (`flat_picture`);
6. every frame is the same person: each frame's encoding is within `same_person_max` of the
   burst's median encoding (`person_changed`).

Matching then uses the burst's median encoding (element-wise median over the frames), not
the best single frame: one lucky frame cannot carry a look-alike through.

Yaw sign (docs/identity.md): the horizontal offset of the nose tip from the midpoint between
the eyes, along the eye axis, divided by the distance between the eyes, in the picture as
the camera took it (not mirrored). It grows when the face turns toward the image's right,
which is the person's own left: "turn left" asks for yaw to increase.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Protocol

import numpy as np

from identity.embeddings import Box

Action = Literal["blink", "turn_left", "turn_right"]
ACTIONS: tuple[Action, ...] = ("blink", "turn_left", "turn_right")


def gettext_noop(text: str) -> str:
    """Marks a text for `makemessages` (which looks for this name) without importing Django."""
    return text


# What the cabinet shows for each refusal: something the person can act on. Marked for
# translation, translated where the answer is built (courier.access.face_bursts).
REFUSALS: dict[str, str] = {
    "bad_burst": gettext_noop("Please look at the camera again."),
    "frozen": gettext_noop("The camera picture did not change: please look at the camera again."),
    "unreadable_frame": gettext_noop("The camera picture could not be read: please try again."),
    "no_face": gettext_noop("Keep your face in the frame and look at the camera."),
    "several_faces": gettext_noop("Only one person at a time in front of the camera, please."),
    "too_much_movement": gettext_noop("Hold still, too much movement."),
    "no_blink": gettext_noop("Please blink."),
    "no_turn_left": gettext_noop("Turn your head slowly to the left."),
    "no_turn_right": gettext_noop("Turn your head slowly to the right."),
    "flat_picture": gettext_noop("Face pickup needs you in person: please use your pickup code."),
    "person_changed": gettext_noop("Only one person at a time in front of the camera, please."),
}
ACTION_REFUSAL: dict[str, str] = {
    "blink": "no_blink",
    "turn_left": "no_turn_left",
    "turn_right": "no_turn_right",
}
# Shown with the challenge, before the burst is taken.
ACTION_PROMPTS: dict[str, str] = {
    "blink": gettext_noop("Please blink."),
    "turn_left": gettext_noop("Turn your head slowly to the left."),
    "turn_right": gettext_noop("Turn your head slowly to the right."),
}

# dlib's 68-point layout.
_RIGHT_EYE = slice(36, 42)  # the person's right eye: image left
_LEFT_EYE = slice(42, 48)
_NOSE_TIP = 30
# Jaw, brows and nose: what a blink or speech does not move.
_STILL_POINTS = np.r_[0:36]


@dataclass(frozen=True)
class BurstLimits:
    """What a burst may be; docs/cabinet-protocol.md states the same numbers."""

    min_frames: int = 6
    max_frames: int = 20
    max_frame_bytes: int = 96 * 1024
    max_total_bytes: int = 700 * 1024
    min_span_ms: int = 1000
    max_span_ms: int = 3000
    max_side: int = 1280


@dataclass(frozen=True)
class LivenessPolicy:
    # A blink: in some frame the eyes measure less than this fraction of their most open
    # before and after it (EAR relative to a flat-picture prediction, see eye_closure).
    # Measured on the GRID clips at 12.5 fps: blinks 0.53-0.67, no blink 0.77 and above;
    # docs/identity.md.
    blink_ratio: float = 0.72
    # A turn: yaw (nose offset / eye distance) changes by at least this much, in the asked
    # direction, from an earlier frame to a later one.
    turn_min: float = 0.25
    # A flat picture: the two most different poses fit one homography with an RMS landmark
    # residual below this fraction of the eye distance.
    flat_max_residual: float = 0.09
    # The face centre moves at most this many eye distances between consecutive frames.
    max_step: float = 1.5
    # Yaw changes by at most this much between consecutive frames (the Intel turn: 0.21 at
    # 12.5 fps): a turn is continuous; a print swapped for another of the other pose is not.
    max_yaw_step: float = 0.3
    # The face (its box, as a 64x64 grey thumbnail) changes between consecutive frames by a
    # median mean absolute difference below this many grey levels: one picture, re-encoded
    # (measured: 0.5 at most; live GRID and Intel clips 1.3 and more).
    frozen_max_diff: float = 0.8
    # Every frame within this distance of the burst's median encoding.
    same_person_max: float = 0.45


@dataclass(frozen=True)
class FaceObservation:
    box: Box
    landmarks: np.ndarray  # (68, 2) float, image pixels
    encoding: np.ndarray | None = None  # (128,), once encoded


class LandmarkEncoder(Protocol):
    model_version: str

    def observe(self, rgb: np.ndarray) -> list[FaceObservation]:
        """Every face in an HxWx3 uint8 RGB image, with its 68 landmarks (no encoding)."""
        ...

    def encode(self, rgb: np.ndarray, face: FaceObservation) -> np.ndarray:
        """The (128,) encoding of `face`, aligned on its landmarks."""
        ...


@dataclass(frozen=True)
class BurstFrame:
    t_ms: int
    jpeg: bytes


@dataclass(frozen=True)
class LivenessResult:
    ok: bool
    code: str  # "live", or a refusal code of REFUSALS
    message: str
    encoding: np.ndarray | None = None  # the burst's median encoding, when ok
    figures: dict[str, Any] = field(default_factory=dict)  # for the audit row; no face data

    def explain(self) -> str:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(self.figures.items()))
        return f"{self.code} ({shown})" if shown else self.code


def _refuse(code: str, **figures: Any) -> LivenessResult:
    return LivenessResult(ok=False, code=code, message=REFUSALS[code], figures=figures)


# --- geometry, pure --------------------------------------------------------------------


def _eye_ratio(eye: np.ndarray) -> float:
    vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    horizontal = np.linalg.norm(eye[0] - eye[3])
    return float(vertical / (2.0 * horizontal)) if horizontal > 0 else 0.0


def eye_aspect_ratio(landmarks: np.ndarray) -> float:
    """Mean EAR of both eyes (Soukupová and Čech, 2016): about 0.3 open, under 0.2 shut."""
    return (_eye_ratio(landmarks[_RIGHT_EYE]) + _eye_ratio(landmarks[_LEFT_EYE])) / 2.0


def eye_distance(landmarks: np.ndarray) -> float:
    return float(
        np.linalg.norm(landmarks[_LEFT_EYE].mean(axis=0) - landmarks[_RIGHT_EYE].mean(axis=0))
    )


def yaw(landmarks: np.ndarray) -> float:
    """Nose-tip offset from the eyes' midpoint along the eye axis, in eye distances;
    positive when the face turns toward the image's right (the person's left)."""
    right, left = landmarks[_RIGHT_EYE].mean(axis=0), landmarks[_LEFT_EYE].mean(axis=0)
    axis = left - right
    norm = float(np.linalg.norm(axis))
    if norm == 0:
        return 0.0
    offset = landmarks[_NOSE_TIP] - (right + left) / 2.0
    return float(np.dot(offset, axis) / norm**2)


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    import cv2

    matrix, _ = cv2.findHomography(src.astype(np.float64), dst.astype(np.float64), 0)
    return None if matrix is None else np.asarray(matrix, dtype=np.float64)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    ones = np.ones((len(points), 1))
    mapped = np.hstack([points, ones]) @ matrix.T
    return np.asarray(mapped[:, :2] / mapped[:, 2:3])


def planar_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance, in eye distances of `b`, between `b`'s landmarks and `a`'s mapped by the
    best single homography (least squares over all 68): near 0 for a flat picture however it
    is held, clearly above for a head that turned."""
    matrix = _homography(a, b)
    if matrix is None:
        return float("inf")
    error = np.linalg.norm(_apply(matrix, a) - b, axis=1)
    return float(np.sqrt(np.mean(error**2)) / max(eye_distance(b), 1e-6))


def eye_closure(reference: np.ndarray, landmarks: np.ndarray) -> float:
    """This frame's EAR over what the reference frame's eyes would measure here if the face
    were a flat picture (the reference's eyes mapped by the homography that carries its jaw,
    brows and nose onto this frame's). About 1 for open eyes, a print tilted or not; well
    under 1 during a blink."""
    matrix = _homography(reference[_STILL_POINTS], landmarks[_STILL_POINTS])
    expected = eye_aspect_ratio(_apply(matrix, reference) if matrix is not None else reference)
    return eye_aspect_ratio(landmarks) / expected if expected > 0 else 0.0


def blink_dip(closures: Sequence[float]) -> float:
    """How far the eyes shut and opened again: the lowest closure of a frame over the more
    open of (the most open frame before it, the most open frame after it), lower is a
    deeper blink. Eyes that only lower (looking down) do not reopen and do not count."""
    best = float("inf")
    for i in range(1, len(closures) - 1):
        reopened = min(max(closures[:i]), max(closures[i + 1 :]))
        if reopened > 0:
            best = min(best, closures[i] / reopened)
    return best


def turned(yaws: Sequence[float], action: Action, minimum: float) -> float:
    """The largest yaw change in the asked direction from an earlier frame to a later one."""
    sign = 1.0 if action == "turn_left" else -1.0
    best, lowest = 0.0, float("inf")
    for value in yaws:
        value *= sign
        lowest = min(lowest, value)
        best = max(best, value - lowest)
    return best


def median_encoding(encodings: Sequence[np.ndarray]) -> np.ndarray:
    return np.median(np.asarray(encodings, dtype=np.float64), axis=0)


# --- frames ---------------------------------------------------------------------------


def decode_frame(jpeg: bytes, *, max_side: int) -> np.ndarray:
    """RGB pixels, upright (EXIF orientation applied). Raises ValueError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            if image.format != "JPEG" or max(image.size) > max_side:
                raise ValueError("not a JPEG of the allowed size")
            upright = ImageOps.exif_transpose(image).convert("RGB")
            return np.asarray(upright, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError("unreadable JPEG") from exc


def _face_thumbnail(rgb: np.ndarray, box: Box) -> np.ndarray:
    from PIL import Image

    top, right, bottom, left = box
    crop = rgb[max(top, 0) : max(bottom, top + 1), max(left, 0) : max(right, left + 1)]
    grey = Image.fromarray(crop).convert("L").resize((64, 64), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float64)


def frame_digest(jpeg: bytes) -> str:
    """What the server remembers of a frame to refuse its reuse: a hash, never the picture."""
    return hashlib.sha256(jpeg).hexdigest()


def burst_shape_problem(frames: Sequence[BurstFrame], limits: BurstLimits) -> str | None:
    """Cheap checks before any decoding."""
    if not limits.min_frames <= len(frames) <= limits.max_frames:
        return "bad_burst"
    if any(len(f.jpeg) > limits.max_frame_bytes for f in frames):
        return "bad_burst"
    if sum(len(f.jpeg) for f in frames) > limits.max_total_bytes:
        return "bad_burst"
    times = [f.t_ms for f in frames]
    if any(b <= a for a, b in itertools.pairwise(times)):
        return "bad_burst"
    if not limits.min_span_ms <= times[-1] - times[0] <= limits.max_span_ms:
        return "bad_burst"
    if len({frame_digest(f.jpeg) for f in frames}) != len(frames):
        return "frozen"
    return None


# --- the check ------------------------------------------------------------------------


def burst_check(
    frames: Sequence[BurstFrame],
    actions: Sequence[Action],
    *,
    encoder: LandmarkEncoder,
    policy: LivenessPolicy = LivenessPolicy(),
    limits: BurstLimits = BurstLimits(),
) -> LivenessResult:
    """Decide whether `frames` show one live person doing `actions`; see the module doc."""
    problem = burst_shape_problem(frames, limits)
    if problem is not None:
        return _refuse(problem, frames=len(frames))
    images: list[np.ndarray] = []
    faces: list[FaceObservation] = []
    for index, frame in enumerate(frames):
        try:
            rgb = decode_frame(frame.jpeg, max_side=limits.max_side)
        except ValueError:
            return _refuse("unreadable_frame", frame=index)
        found = encoder.observe(rgb)
        if not found:
            return _refuse("no_face", frame=index)
        if len(found) > 1:
            return _refuse("several_faces", frame=index)
        images.append(rgb)
        faces.append(found[0])
    return _burst_geometry(images, faces, actions, encoder=encoder, policy=policy)


def _burst_geometry(
    images: Sequence[np.ndarray],
    faces: Sequence[FaceObservation],
    actions: Sequence[Action],
    *,
    encoder: LandmarkEncoder,
    policy: LivenessPolicy,
) -> LivenessResult:
    thumbs = [_face_thumbnail(rgb, face.box) for rgb, face in zip(images, faces, strict=True)]
    change = float(np.median([np.mean(np.abs(a - b)) for a, b in itertools.pairwise(thumbs)]))
    if change < policy.frozen_max_diff:
        return _refuse("frozen", face_change=round(change, 3))

    marks = [face.landmarks for face in faces]
    steps = [
        float(np.linalg.norm(b.mean(axis=0) - a.mean(axis=0)) / max(eye_distance(a), 1e-6))
        for a, b in itertools.pairwise(marks)
    ]
    if max(steps) > policy.max_step:
        return _refuse("too_much_movement", max_step=round(max(steps), 3))

    ears = [eye_aspect_ratio(m) for m in marks]
    yaws = [yaw(m) for m in marks]
    # A head turns through the poses in between; two pictures swapped jump.
    jump = max(abs(b - a) for a, b in itertools.pairwise(yaws))
    if jump > policy.max_yaw_step:
        return _refuse("too_much_movement", yaw_step=round(jump, 3))
    figures: dict[str, Any] = {
        "frames": len(faces),
        "yaw_min": round(min(yaws), 3),
        "yaw_max": round(max(yaws), 3),
    }
    for action in actions:
        if action == "blink":
            # The reference is the frame whose EAR is the burst's median: open eyes.
            order = np.argsort(ears)
            reference = marks[int(order[len(order) // 2])]
            dip = blink_dip([eye_closure(reference, m) for m in marks])
            figures["blink_dip"] = round(dip, 3)
            if dip >= policy.blink_ratio:
                return _refuse(ACTION_REFUSAL[action], **figures)
        else:
            change = turned(yaws, action, policy.turn_min)
            figures[f"{action}_yaw"] = round(change, 3)
            if change < policy.turn_min:
                return _refuse(ACTION_REFUSAL[action], **figures)

    if max(yaws) - min(yaws) >= policy.turn_min:
        # Only a head that turned can show its depth; a still one is judged by its blink.
        first, last = int(np.argmin(yaws)), int(np.argmax(yaws))
        residual = planar_residual(marks[first], marks[last])
        figures["planar_residual"] = round(residual, 4)
        if residual < policy.flat_max_residual:
            return _refuse("flat_picture", **figures)

    encodings = [encoder.encode(rgb, face) for rgb, face in zip(images, faces, strict=True)]
    median = median_encoding(encodings)
    spread = float(np.max(np.linalg.norm(np.asarray(encodings) - median, axis=1)))
    figures["same_person_max"] = round(spread, 3)
    if spread > policy.same_person_max:
        return _refuse("person_changed", **figures)
    return LivenessResult(ok=True, code="live", message="", encoding=median, figures=figures)


# --- dlib -----------------------------------------------------------------------------


class DlibLandmarkEncoder:
    """dlib's HOG detector, its 68-point shape predictor and its ResNet encoder, used
    directly (one detection and one landmark fit per frame feed both the liveness
    geometry and the encoding). Encodings equal face_recognition's with the "large"
    landmark model, so they compare with the templates identity.embeddings.DlibEncoder
    enrolled."""

    def __init__(self, *, upsample: int = 1, num_jitters: int = 1) -> None:
        from identity.embeddings import DlibEncoder

        self.upsample = upsample
        self.num_jitters = num_jitters
        self.model_version = DlibEncoder(landmarks="large").model_version
        self._lock = threading.Lock()

    def observe(self, rgb: np.ndarray) -> list[FaceObservation]:
        detector, predictor, _ = _dlib_models()
        image = np.ascontiguousarray(rgb)
        found = []
        # Without upsampling first: HOG finds faces of 80 px and more (a person at the
        # cabinet) in about a quarter of the time; smaller faces only on a second pass.
        rects = detector(image, 0)
        if len(rects) == 0 and self.upsample > 0:
            rects = detector(image, self.upsample)
        for rect in rects:
            shape = predictor(image, rect)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            # As dlib found it (it may reach past the edge): encode() fits the same shape.
            box = (rect.top(), rect.right(), rect.bottom(), rect.left())
            found.append(FaceObservation(box=box, landmarks=points))
        return found

    def encode(self, rgb: np.ndarray, face: FaceObservation) -> np.ndarray:
        import dlib

        _, predictor, model = _dlib_models()
        image = np.ascontiguousarray(rgb)
        top, right, bottom, left = face.box
        shape = predictor(image, dlib.rectangle(left, top, right, bottom))
        return np.asarray(
            model.compute_face_descriptor(image, shape, self.num_jitters), dtype=np.float64
        )


@lru_cache(maxsize=1)
def _dlib_models() -> tuple[Any, Any, Any]:
    from identity.embeddings import _face_recognition

    fr = _face_recognition()  # the same weights, imported the same guarded way
    return fr.api.face_detector, fr.api.pose_predictor_68_point, fr.api.face_encoder


@lru_cache(maxsize=1)
def get_default_landmark_encoder() -> LandmarkEncoder:
    return DlibLandmarkEncoder()
