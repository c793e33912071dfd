"""From uploaded bytes to one face encoding, or a refusal the user can act on. No Django.

Order matters: cheap checks on the bytes and the header come before any decoding (an
upload can declare gigapixels in a few bytes), and detection runs on a bounded-size copy
because HOG cost grows with the pixel count. The encoding itself is taken from the
full-resolution photo, where small faces still have detail.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from identity.embeddings import Box, FaceEncoder


def gettext_noop(text: str) -> str:
    """Marks a text for translation (xgettext knows the name) without importing Django: the
    page translates the stored English text (identity.selectors.photo_view)."""
    return text


REFUSALS: dict[str, str] = {
    "empty": gettext_noop("The photo is empty: take the picture again."),
    "too_large": gettext_noop("The photo file is too large: send a smaller photo."),
    "unsupported_type": gettext_noop("Unsupported file: send a JPEG, PNG or WEBP photo."),
    "too_many_pixels": gettext_noop("The photo has too many pixels: send a smaller photo."),
    "corrupt_image": gettext_noop("The photo could not be read: take the picture again."),
    "too_dark": gettext_noop("Too dark: move somewhere brighter or switch on the light."),
    "too_bright": gettext_noop("Too bright: move out of direct light."),
    "low_contrast": gettext_noop("The face is washed out: avoid light from behind and try again."),
    "no_face": gettext_noop("No face found: look straight at the camera."),
    "multiple_faces": gettext_noop(
        "Two faces in the picture: only the person enrolling should be in the photo."
    ),
    "face_too_small": gettext_noop("Move closer to the camera."),
    "too_blurry": gettext_noop("The photo is blurred: hold still and try again."),
    "processing_error": gettext_noop(
        "Something went wrong while reading this photo: please try again."
    ),
    "too_similar": gettext_noop(
        "This photo is almost the same as one you already sent: take the next one at another "
        "moment (another day, other light), so that the locker knows you then too."
    ),
}

_MAGIC: tuple[tuple[str, bytes, int], ...] = (
    ("JPEG", b"\xff\xd8\xff", 0),
    ("PNG", b"\x89PNG\r\n\x1a\n", 0),
    ("WEBP", b"WEBP", 8),
)


class FaceRefused(Exception):
    """The photo cannot be used; `code` is stable, `message` is for the person enrolling."""

    def __init__(
        self, code: str, message: str | None = None, details: Mapping[str, Any] | None = None
    ) -> None:
        self.code = code
        self.message = message if message is not None else REFUSALS[code]
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(f"{code}: {self.message}")


@dataclass(frozen=True)
class PhotoLimits:
    max_bytes: int = 10 * 1024 * 1024
    # Refused from the header, before decoding: 12 MP is a phone's full-size photo, and a
    # decoded RGBA copy of it is already about 48 MB.
    max_pixels: int = 12_000_000
    formats: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP"})
    detect_max_side: int = 640
    # JPEGs larger than this are decoded reduced by libjpeg (1/2, 1/4 or 1/8), never
    # below it: the encoding is taken from this resolution. 0 decodes full size.
    decode_max_side: int = 1600


@dataclass(frozen=True)
class QualityPolicy:
    # Luminance 0..255 of the face region (the whole image while no face is found).
    min_brightness: float = 60.0
    max_brightness: float = 200.0
    min_contrast: float = 20.0
    max_clipped_fraction: float = 0.25
    # The whole picture, judged only while no face has been found.
    image_min_brightness: float = 35.0
    image_max_brightness: float = 225.0
    image_min_contrast: float = 10.0
    # Fewer grey levels than this between the 1st and 99th percentile carry too little
    # information to be stretched back into a face.
    min_dynamic_range: float = 16.0
    enhance: bool = True
    # A second face at least this fraction of the largest face's area is another person
    # in the picture, not a poster in the background.
    multiple_faces_area_ratio: float = 0.5
    # HOG boxes span brows to chin, about two thirds of the head; 60 px keeps a 240p
    # webcam frame of a face filling the picture usable.
    min_face_px: int = 60
    # Variance of the Laplacian of the face resized to `sharpness_face_px`, roughly the
    # size the encoder sees inside its 150 px chip.
    min_sharpness: float = 40.0
    sharpness_face_px: int = 100
    # The encoder aligns the face into a 150 px chip; larger faces are reduced first with
    # an antialiasing filter, smaller ones are used as they are.
    encode_face_px: int = 200
    crop_margin: float = 0.5


@dataclass(frozen=True)
class FaceResult:
    encoding: np.ndarray
    box: Box
    quality: dict[str, Any] = field(default_factory=dict)
    model_name: str = ""
    model_version: str = ""


@dataclass(frozen=True)
class _Lighting:
    brightness: float
    contrast: float
    clipped: float
    dynamic_range: float

    def face_problem(self, policy: QualityPolicy) -> str | None:
        return self._problem(
            policy.min_brightness,
            policy.max_brightness,
            policy.min_contrast,
            policy.max_clipped_fraction,
        )

    def image_problem(self, policy: QualityPolicy) -> str | None:
        # Dark or plain backgrounds are normal around a well-lit face, so the whole picture
        # only counts as badly lit at the extremes, and clipping is not held against it.
        return self._problem(
            policy.image_min_brightness, policy.image_max_brightness, policy.image_min_contrast, 1.0
        )

    def _problem(
        self, min_brightness: float, max_brightness: float, min_contrast: float, max_clipped: float
    ) -> str | None:
        if self.brightness < min_brightness:
            return "too_dark"
        if self.brightness > max_brightness:
            return "too_bright"
        if self.clipped > max_clipped:
            return "too_dark" if self.brightness < 128 else "too_bright"
        if self.contrast < min_contrast:
            return "low_contrast"
        return None


def process_photo(
    data: bytes,
    *,
    encoder: FaceEncoder,
    limits: PhotoLimits = PhotoLimits(),
    quality: QualityPolicy = QualityPolicy(),
) -> FaceResult:
    """Encode the one face in an uploaded photo, or raise `FaceRefused`."""
    started = time.perf_counter()
    rgb = decode_photo(data, limits=limits)
    decode_ms = (time.perf_counter() - started) * 1000
    result = process_rgb(rgb, encoder=encoder, limits=limits, quality=quality)
    result.quality["decode_ms"] = round(decode_ms, 1)
    return result


# What inspect_photo refuses an upload for, before any worker sees it: not a photo that
# this pipeline reads.
UPLOAD_REFUSALS = ("empty", "too_large", "unsupported_type", "too_many_pixels", "corrupt_image")


def decode_photo(data: bytes, *, limits: PhotoLimits = PhotoLimits()) -> np.ndarray:
    """Upright HxWx3 uint8 RGB pixels of a JPEG/PNG/WEBP upload, within `limits`."""
    image = _open_checked(data, limits)
    block = _draft_reduced(image, limits.decode_max_side) if image.format == "JPEG" else 0
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FaceRefused("too_many_pixels", details={"max_pixels": limits.max_pixels}) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise FaceRefused("corrupt_image") from exc
    if block and _ends_in_missing_data(image, block):
        raise FaceRefused("corrupt_image", details={"reason": "truncated"})

    try:
        upright = ImageOps.exif_transpose(image) or image
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        # Broken EXIF should not cost the user their photo; the pixels are fine.
        upright = image
    return _to_rgb_array(upright)


def _draft_reduced(image: Image.Image, max_side: int) -> int:
    """Ask libjpeg for the largest reduction (1/2, 1/4, 1/8) that keeps the long side at or
    above `max_side`, before decoding. Returns the size in pixels of one 8x8 DCT block of
    the decoded picture."""
    width, height = image.size
    scale = 1
    while max_side and scale < 8 and max(width, height) // (scale * 2) >= max_side:
        scale *= 2
    if scale > 1:
        image.draft(image.mode, (width // scale, height // scale))
    return max(1, 8 * image.size[0] // width)


def _ends_in_missing_data(image: Image.Image, block: int) -> bool:
    """Whether the last DCT block decoded as data libjpeg never received. A JPEG cut short
    and given an end marker passes every structural check (the marker is where it should
    be), and libjpeg fills the missing blocks with zero coefficients: exactly mid-grey,
    128 in every channel. A real photo never has a block that flat and exactly 128; a
    picture of nothing but that grey is refused as well (it holds no face).

    Not covered: a progressive JPEG cut in a later scan is a complete, coarser picture
    (its blocks have their first scans); it then goes through the blur and light checks."""
    if image.mode not in ("L", "RGB"):
        return False
    width, height = image.size
    left, top = (width - 1) // block * block, (height - 1) // block * block
    corner = np.asarray(image.crop((left, top, width, height)))
    return bool(corner.size) and bool((corner == 128).all())


def inspect_photo(data: bytes, *, limits: PhotoLimits = PhotoLimits()) -> str:
    """The format of an upload that passes every check short of decoding its pixels, or
    `FaceRefused`. Cheap enough for a web request: it reads the header and the tail only."""
    image = _open_checked(data, limits)
    return str(image.format)


def _open_checked(data: bytes, limits: PhotoLimits) -> Image.Image:
    if not data:
        raise FaceRefused("empty")
    if len(data) > limits.max_bytes:
        raise FaceRefused("too_large", details={"bytes": len(data), "max_bytes": limits.max_bytes})
    sniffed = _sniff_format(data)
    if sniffed is None or sniffed not in limits.formats:
        raise FaceRefused("unsupported_type", details={"accepted": sorted(limits.formats)})

    try:
        # Image.open reads the header only: the size is known before any pixel is decoded.
        image = Image.open(io.BytesIO(data), formats=[sniffed])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FaceRefused("too_many_pixels", details={"max_pixels": limits.max_pixels}) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FaceRefused("corrupt_image") from exc

    if not _looks_complete(data, sniffed):
        # Not left to Pillow: face_recognition sets the process-wide
        # ImageFile.LOAD_TRUNCATED_IMAGES on import, and a half-sent upload would then
        # decode with its lower half grey.
        raise FaceRefused("corrupt_image", details={"reason": "truncated"})

    width, height = image.size
    if width * height > limits.max_pixels:
        raise FaceRefused(
            "too_many_pixels",
            details={"width": width, "height": height, "max_pixels": limits.max_pixels},
        )
    if width < 1 or height < 1:
        raise FaceRefused("corrupt_image")
    return image


def process_rgb(
    rgb: np.ndarray,
    *,
    encoder: FaceEncoder,
    limits: PhotoLimits = PhotoLimits(),
    quality: QualityPolicy = QualityPolicy(),
) -> FaceResult:
    """The checks and the encoding for already decoded, upright RGB pixels."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 array, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    small, scale = _downscale(rgb, limits.detect_max_side)
    timings = {"detection_ms": 0.0, "encode_ms": 0.0}

    def locate(image: np.ndarray) -> list[Box]:
        started = time.perf_counter()
        found = encoder.locate(image)
        timings["detection_ms"] += (time.perf_counter() - started) * 1000
        return found

    small_y = _luminance(small)
    whole = _lighting(small_y)
    lut: np.ndarray | None = None
    enhancement = ""

    boxes = locate(small)
    box = _choose_face(boxes, quality) if boxes else None
    lighting = _lighting(_region(small_y, box)) if box else whole
    problem = lighting.face_problem(quality) if box else whole.image_problem(quality)

    if problem is not None:
        if not quality.enhance or lighting.dynamic_range < quality.min_dynamic_range:
            raise FaceRefused(problem, details=_lighting_details(lighting))
        lut, enhancement = _enhancement_lut(_region(small_y, box))
        enhanced_small = lut[small]
        boxes = locate(enhanced_small)
        box = _choose_face(boxes, quality) if boxes else None
        after = _lighting(_region(_luminance(enhanced_small), box)) if box else None
        still = after.face_problem(quality) if after else problem
        if box is None or after is None or still is not None:
            raise FaceRefused(
                still or problem,
                details={**_lighting_details(lighting), "enhancement_tried": enhancement},
            )
        lighting = after
    if box is None:
        raise FaceRefused("no_face", details={"faces_found": 0})

    original_box = _scale_box(box, scale, width, height)
    face_px = min(original_box[2] - original_box[0], original_box[1] - original_box[3])
    if face_px < quality.min_face_px:
        raise FaceRefused(
            "face_too_small", details={"face_px": face_px, "min_face_px": quality.min_face_px}
        )

    crop, crop_box = _encoding_crop(rgb, original_box, quality)
    if lut is not None:
        crop = lut[crop]
    sharpness = _sharpness(crop, crop_box, quality.sharpness_face_px)
    if sharpness < quality.min_sharpness:
        raise FaceRefused(
            "too_blurry",
            details={"sharpness": round(sharpness, 1), "min_sharpness": quality.min_sharpness},
        )

    started = time.perf_counter()
    encoding = np.asarray(encoder.encode(crop, crop_box), dtype=np.float64)
    timings["encode_ms"] = (time.perf_counter() - started) * 1000
    if encoding.shape != (128,) or not np.all(np.isfinite(encoding)):
        raise ValueError(f"encoder returned an invalid encoding of shape {encoding.shape}")

    return FaceResult(
        encoding=encoding,
        box=original_box,
        quality={
            "brightness": round(lighting.brightness, 1),
            "contrast": round(lighting.contrast, 1),
            "clipped": round(lighting.clipped, 3),
            "sharpness": round(sharpness, 1),
            "face_px": face_px,
            "faces_found": len(boxes),
            "enhanced": lut is not None,
            "enhancement": enhancement,
            "image_px": (width, height),
            "detection_ms": round(timings["detection_ms"], 1),
            "encode_ms": round(timings["encode_ms"], 1),
        },
        model_name=str(getattr(encoder, "model_name", "")),
        model_version=str(getattr(encoder, "model_version", "")),
    )


def _sniff_format(data: bytes) -> str | None:
    for name, magic, offset in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            if name == "WEBP" and data[:4] != b"RIFF":
                continue
            return name
    return None


def _looks_complete(data: bytes, fmt: str) -> bool:
    """Whether the file reaches its end marker; trailing padding from some cameras is allowed."""
    tail = data[-4096:]
    if fmt == "JPEG":
        # Inside entropy-coded data 0xFF is always stuffed, so FFD9 there can only be the
        # end-of-image marker, never pixel data.
        return b"\xff\xd9" in tail
    if fmt == "PNG":
        return b"IEND" in tail
    if fmt == "WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        return len(data) >= declared
    return True


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "F"):
        # Pillow clips 16-bit grey to 255 when converting to "L": a white picture.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / peak), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels hold arbitrary colours (often black): show them as white paper.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    height, width = rgb.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return rgb, 1.0
    scale = longest / max_side
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    small = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(small), scale


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _region(values: np.ndarray, box: Box | None) -> np.ndarray:
    if box is None:
        return values
    top, right, bottom, left = box
    region = values[max(0, top) : bottom, max(0, left) : right]
    return region if region.size else values


def _lighting(y: np.ndarray) -> _Lighting:
    low, high = np.percentile(y, [1, 99])
    return _Lighting(
        brightness=float(y.mean()),
        contrast=float(y.std()),
        clipped=float(np.mean((y <= 8) | (y >= 247))),
        dynamic_range=float(high - low),
    )


def _lighting_details(lighting: _Lighting) -> dict[str, Any]:
    return {
        "brightness": round(lighting.brightness, 1),
        "contrast": round(lighting.contrast, 1),
        "clipped": round(lighting.clipped, 3),
    }


def _enhancement_lut(y: np.ndarray) -> tuple[np.ndarray, str]:
    """A contrast stretch then a gamma that brings the region's mean to mid-grey.

    A lookup table rather than a per-tile method (CLAHE) so the same correction found on
    the small detection copy applies exactly to the full-resolution crop that is encoded.
    """
    low, high = (float(v) for v in np.percentile(y, [1, 99]))
    levels = np.arange(256, dtype=np.float64)
    stretched = np.clip((levels - low) / max(high - low, 1.0), 0.0, 1.0)
    region_mean = float(np.mean(stretched[np.clip(np.rint(y), 0, 255).astype(np.intp)]))
    region_mean = min(max(region_mean, 0.02), 0.98)
    gamma = min(max(math.log(0.5) / math.log(region_mean), 0.25), 4.0)
    lut = np.clip(np.rint(255.0 * stretched**gamma), 0, 255).astype(np.uint8)
    return lut, f"stretch {low:.0f}-{high:.0f}, gamma {gamma:.2f}"


def _choose_face(boxes: list[Box], policy: QualityPolicy) -> Box:
    by_area = sorted(boxes, key=_area, reverse=True)
    if len(by_area) > 1 and _area(by_area[1]) >= policy.multiple_faces_area_ratio * _area(
        by_area[0]
    ):
        raise FaceRefused("multiple_faces", details={"faces_found": len(boxes)})
    return by_area[0]


def _area(box: Box) -> int:
    top, right, bottom, left = box
    return max(0, bottom - top) * max(0, right - left)


def _scale_box(box: Box, scale: float, width: int, height: int) -> Box:
    top, right, bottom, left = box
    return (
        max(0, round(top * scale)),
        min(width, round(right * scale)),
        min(height, round(bottom * scale)),
        max(0, round(left * scale)),
    )


def _encoding_crop(rgb: np.ndarray, box: Box, policy: QualityPolicy) -> tuple[np.ndarray, Box]:
    height, width = rgb.shape[:2]
    top, right, bottom, left = box
    side = max(bottom - top, right - left)
    margin = round(side * policy.crop_margin)
    c_top, c_left = max(0, top - margin), max(0, left - margin)
    c_bottom, c_right = min(height, bottom + margin), min(width, right + margin)
    crop = rgb[c_top:c_bottom, c_left:c_right]
    factor = min(1.0, policy.encode_face_px / side) if side else 1.0
    if factor < 1.0:
        size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
        crop = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
    crop_box = (
        round((top - c_top) * factor),
        round((right - c_left) * factor),
        round((bottom - c_top) * factor),
        round((left - c_left) * factor),
    )
    return np.ascontiguousarray(crop), crop_box


def _sharpness(crop: np.ndarray, box: Box, face_px: int) -> float:
    top, right, bottom, left = box
    face = crop[top:bottom, left:right]
    if face.size == 0:
        return 0.0
    grey = Image.fromarray(face).convert("L").resize((face_px, face_px), Image.Resampling.BILINEAR)
    g = np.asarray(grey, dtype=np.float64)
    laplacian = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(laplacian.var())
