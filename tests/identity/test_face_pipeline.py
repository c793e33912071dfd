from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from identity.embeddings import DlibEncoder, get_default_encoder
from identity.face_pipeline import (
    REFUSALS,
    FaceRefused,
    FaceResult,
    PhotoLimits,
    QualityPolicy,
    decode_photo,
    process_photo,
)
from identity.matching import DEFAULT_MATCH_THRESHOLD, Candidate, MatchDecision, match_probe
from tests.identity.faces import face_bytes, requires_faces
from tests.identity.fakes import FakeEncoder

OBAMA = "examples/obama.jpg"
OBAMA2 = "examples/obama2.jpg"
BIDEN = "examples/biden.jpg"
BIDEN2 = "examples/knn_examples/train/biden/biden2.jpg"
KIT = "examples/knn_examples/train/kit_harington/john1.jpeg"
ROSE = "examples/knn_examples/train/rose_leslie/img1.jpg"


def textured(
    height: int, width: int, *, mean: float = 128.0, std: float = 45.0, cell: int = 1
) -> np.ndarray:
    """Grey noise; `cell` > 1 makes blocks whose contrast survives downscaling."""
    rng = np.random.default_rng(7)
    grey = rng.normal(mean, std, size=(-(-height // cell), -(-width // cell)))
    grey = np.kron(grey, np.ones((cell, cell)))[:height, :width]
    return np.clip(np.repeat(grey[:, :, None], 3, axis=2), 0, 255).astype(np.uint8)


def encoded(image: np.ndarray | Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    picture = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims another size: nothing to decode for real."""
    data = encoded(textured(8, 8))
    ihdr = data[8 + 8 : 8 + 8 + 13]
    patched = struct.pack(">II", width, height) + ihdr[8:]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + patched) & 0xFFFFFFFF)
    return data[:16] + patched + crc + data[16 + 13 + 4 :]


def refusal(call: Callable[[], object]) -> FaceRefused:
    with pytest.raises(FaceRefused) as caught:
        call()
    return caught.value


# Fast tests with the fake encoder: input limits, refusals and their order.


def test_every_refusal_has_a_message_and_the_exception_carries_it() -> None:
    assert all(message.strip() for message in REFUSALS.values())
    error = FaceRefused("no_face")
    assert error.message == "No face found: look straight at the camera."
    assert error.details == {}
    assert REFUSALS["too_dark"] == "Too dark: move somewhere brighter or switch on the light."
    assert REFUSALS["face_too_small"] == "Move closer to the camera."


def test_it_refuses_an_empty_upload() -> None:
    assert refusal(lambda: process_photo(b"", encoder=FakeEncoder())).code == "empty"


def test_it_refuses_a_file_over_the_byte_limit_before_reading_it() -> None:
    fake = FakeEncoder()
    data = encoded(textured(64, 64))
    error = refusal(
        lambda: process_photo(data, encoder=fake, limits=PhotoLimits(max_bytes=len(data) - 1))
    )
    assert error.code == "too_large"
    assert error.details["bytes"] == len(data)
    assert fake.located_shapes == []


@pytest.mark.parametrize(
    "data",
    [
        b"Dear recipient, this is not a photo.\n" * 10,
        encoded(textured(32, 32), "GIF"),
        encoded(textured(32, 32), "BMP"),
    ],
    ids=["text", "gif", "bmp"],
)
def test_it_accepts_only_jpeg_png_and_webp_by_content(data: bytes) -> None:
    assert refusal(lambda: process_photo(data, encoder=FakeEncoder())).code == "unsupported_type"


def test_the_format_is_judged_by_content_not_by_name(tmp_path: Path) -> None:
    path = tmp_path / "selfie.gif"
    path.write_bytes(encoded(textured(200, 200), "WEBP", quality=90))
    result = process_photo(path.read_bytes(), encoder=FakeEncoder())
    assert result.encoding.shape == (128,)


@pytest.mark.parametrize(("width", "height"), [(8000, 7000), (20000, 20000)])
def test_it_refuses_too_many_pixels_from_the_header_without_decoding(
    width: int, height: int
) -> None:
    fake = FakeEncoder()
    data = png_declaring(width, height)
    assert len(data) < 1000
    error = refusal(lambda: process_photo(data, encoder=fake))
    assert error.code == "too_many_pixels"
    assert fake.located_shapes == []


def test_the_pixel_limit_is_a_policy() -> None:
    data = encoded(textured(300, 300))
    error = refusal(lambda: decode_photo(data, limits=PhotoLimits(max_pixels=300 * 300 - 1)))
    assert error.code == "too_many_pixels"
    assert decode_photo(data, limits=PhotoLimits(max_pixels=300 * 300)).shape == (300, 300, 3)


def test_it_refuses_corrupt_data_behind_a_valid_signature() -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
    assert refusal(lambda: process_photo(data, encoder=FakeEncoder())).code == "corrupt_image"


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("RGBA", lambda a: Image.fromarray(a).convert("RGBA")),
        ("LA", lambda a: Image.fromarray(a).convert("LA")),
        ("P", lambda a: Image.fromarray(a).convert("P")),
        ("L", lambda a: Image.fromarray(a).convert("L")),
        ("I;16", lambda a: Image.fromarray(a[:, :, 0].astype(np.uint16) * 257)),
    ],
)
def test_it_decodes_every_png_colour_mode_to_rgb(
    mode: str, make: Callable[[np.ndarray], Image.Image]
) -> None:
    source = textured(40, 60)
    picture = make(source)
    assert picture.mode == mode
    rgb = decode_photo(encoded(picture))
    assert rgb.shape == (40, 60, 3)
    assert rgb.dtype == np.uint8
    # 16-bit grey must be scaled down, not clipped to white.
    assert abs(float(rgb.mean()) - float(source.mean())) < 8


def test_transparent_pixels_become_white_not_black() -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgb = decode_photo(encoded(Image.fromarray(rgba, "RGBA")))
    assert (rgb == 255).all()


def test_it_detects_on_a_bounded_copy_but_reports_the_box_and_encodes_at_full_size() -> None:
    fake = FakeEncoder()
    result = process_photo(encoded(textured(1500, 2000, cell=12)), encoder=fake)
    assert fake.located_shapes == [(480, 640, 3)]
    assert result.box == (375, 1500, 1125, 500)
    assert result.quality["face_px"] == 750
    assert result.quality["image_px"] == (2000, 1500)
    # The face is reduced to encode_face_px (200) from the full-size crop, not from the
    # 640 px copy where it would be 240 px wide and blurred by an extra resampling.
    (crop_shape, crop_box) = fake.encoded[0]
    _, right, _, left = crop_box
    assert right - left == 200
    assert crop_shape[0] < 1500


def test_it_refuses_a_picture_without_a_face() -> None:
    error = refusal(lambda: process_photo(encoded(textured(300, 300)), encoder=FakeEncoder([])))
    assert error.code == "no_face"
    assert error.message == REFUSALS["no_face"]


def test_it_refuses_two_faces_of_similar_size() -> None:
    fake = FakeEncoder([(0.1, 0.45, 0.5, 0.1), (0.1, 0.9, 0.45, 0.55)])
    error = refusal(lambda: process_photo(encoded(textured(400, 400)), encoder=fake))
    assert error.code == "multiple_faces"
    assert error.details["faces_found"] == 2


def test_it_ignores_a_much_smaller_background_face_and_uses_the_largest() -> None:
    fake = FakeEncoder([(0.05, 0.2, 0.2, 0.05), (0.3, 0.8, 0.8, 0.3)])
    result = process_photo(encoded(textured(400, 400)), encoder=fake)
    assert result.box == (120, 320, 320, 120)
    assert result.quality["faces_found"] == 2


def test_the_similar_size_ratio_is_a_policy() -> None:
    fake = FakeEncoder([(0.05, 0.2, 0.2, 0.05), (0.3, 0.8, 0.8, 0.3)])
    data = encoded(textured(400, 400))
    policy = QualityPolicy(multiple_faces_area_ratio=0.05)
    assert refusal(lambda: process_photo(data, encoder=fake, quality=policy)).code == (
        "multiple_faces"
    )


def test_it_asks_to_move_closer_when_the_face_is_small_at_full_resolution() -> None:
    fake = FakeEncoder([(0.4, 0.55, 0.55, 0.4)])
    error = refusal(lambda: process_photo(encoded(textured(300, 300)), encoder=fake))
    assert error.code == "face_too_small"
    assert error.message == "Move closer to the camera."
    assert error.details["face_px"] == 45


def test_it_refuses_a_blurred_face() -> None:
    ramp = np.tile(np.linspace(0, 255, 300), (300, 1))
    smooth = np.repeat(ramp[:, :, None], 3, axis=2).astype(np.uint8)
    error = refusal(lambda: process_photo(encoded(smooth), encoder=FakeEncoder()))
    assert error.code == "too_blurry"
    assert error.details["sharpness"] < QualityPolicy().min_sharpness


@pytest.mark.parametrize(
    ("image", "code"),
    [
        (textured(300, 300, mean=2, std=1), "too_dark"),
        (textured(300, 300, mean=253, std=1), "too_bright"),
        (textured(300, 300, mean=128, std=2), "low_contrast"),
    ],
    ids=["near-black", "near-white", "flat-grey"],
)
def test_it_refuses_lighting_that_holds_too_little_information_to_rescue(
    image: np.ndarray, code: str
) -> None:
    fake = FakeEncoder()
    error = refusal(lambda: process_photo(encoded(image), encoder=fake))
    assert error.code == code
    assert "brightness" in error.details
    assert fake.encoded == []


def test_it_enhances_a_dark_photo_and_detects_again() -> None:
    fake = FakeEncoder(min_brightness=40)
    dark = (textured(300, 300).astype(np.float64) * 0.15).astype(np.uint8)
    result = process_photo(encoded(dark), encoder=fake)
    assert result.quality["enhanced"] is True
    assert "gamma" in result.quality["enhancement"]
    assert len(fake.located_shapes) == 2
    assert QualityPolicy().min_brightness <= result.quality["brightness"]


def test_without_enhancement_a_dark_photo_is_refused() -> None:
    dark = (textured(300, 300).astype(np.float64) * 0.15).astype(np.uint8)
    policy = QualityPolicy(enhance=False)
    error = refusal(lambda: process_photo(encoded(dark), encoder=FakeEncoder(), quality=policy))
    assert error.code == "too_dark"


def test_a_well_lit_photo_is_not_enhanced() -> None:
    result = process_photo(encoded(textured(300, 300)), encoder=FakeEncoder())
    assert result.quality["enhanced"] is False
    assert result.quality["enhancement"] == ""
    assert result.model_name == "fake"
    assert result.model_version == "1"


# Real dlib on the shared photos.


@pytest.fixture(scope="module")
def dlib() -> DlibEncoder:
    encoder = get_default_encoder()
    assert isinstance(encoder, DlibEncoder)
    return encoder


@pytest.fixture(scope="module")
def photo(dlib: DlibEncoder) -> Callable[[str], FaceResult]:
    cache: dict[str, FaceResult] = {}

    def get(relative: str) -> FaceResult:
        if relative not in cache:
            cache[relative] = process_photo(face_bytes(relative), encoder=dlib)
        return cache[relative]

    return get


def distance(a: FaceResult, b: FaceResult) -> float:
    return float(np.linalg.norm(a.encoding - b.encoding))


def decide(probe: FaceResult, **people: FaceResult) -> MatchDecision:
    candidates = [Candidate(key=name, encodings=[r.encoding]) for name, r in people.items()]
    return match_probe(probe.encoding, candidates, threshold=DEFAULT_MATCH_THRESHOLD, margin=0.08)


def test_the_default_encoder_is_one_cached_dlib_encoder(dlib: DlibEncoder) -> None:
    assert get_default_encoder() is dlib
    assert dlib.model_name == "dlib_face_recognition_resnet_model_v1"
    assert "dlib" in dlib.model_version


@requires_faces
def test_real_photos_of_the_same_person_match_and_different_people_do_not(
    photo: Callable[[str], FaceResult],
) -> None:
    obama, obama2, biden, biden2 = photo(OBAMA), photo(OBAMA2), photo(BIDEN), photo(BIDEN2)
    assert obama.encoding.shape == (128,)
    assert obama.encoding.dtype == np.float64
    assert decide(obama2, obama=obama, biden=biden).best_key == "obama"
    assert decide(biden2, obama=obama, biden=biden).best_key == "biden"
    assert distance(obama, biden) > DEFAULT_MATCH_THRESHOLD
    assert distance(photo(KIT), photo(ROSE)) > DEFAULT_MATCH_THRESHOLD
    assert decide(photo(KIT), rose=photo(ROSE)).decision == "no_match"


@requires_faces
def test_the_pipeline_reports_its_quality_figures(photo: Callable[[str], FaceResult]) -> None:
    quality = photo(OBAMA).quality
    assert photo(OBAMA).box == pytest.approx((144, 632, 419, 357), abs=6)
    assert quality["enhanced"] is False
    assert quality["face_px"] > 200
    for key in ("brightness", "contrast", "sharpness", "detection_ms", "encode_ms"):
        assert quality[key] > 0


@requires_faces
def test_a_photo_of_two_people_is_refused(dlib: DlibEncoder) -> None:
    error = refusal(lambda: process_photo(face_bytes("examples/two_people.jpg"), encoder=dlib))
    assert error.code == "multiple_faces"
    assert error.message == (
        "Two faces in the picture: only the person enrolling should be in the photo."
    )


@requires_faces
def test_a_small_face_in_the_background_is_ignored(
    dlib: DlibEncoder, photo: Callable[[str], FaceResult]
) -> None:
    picture = Image.open(io.BytesIO(face_bytes(OBAMA)))
    passer_by = Image.open(io.BytesIO(face_bytes(BIDEN)))
    passer_by = passer_by.resize((passer_by.width // 4, passer_by.height // 4))
    picture.paste(passer_by.crop((0, 0, passer_by.width, 300)), (0, 0))
    result = process_photo(encoded(picture, "JPEG", quality=95), encoder=dlib)
    assert result.quality["faces_found"] == 2
    assert distance(result, photo(OBAMA)) < 0.1


@requires_faces
def test_a_picture_without_a_face_is_refused(dlib: DlibEncoder) -> None:
    y, x = np.mgrid[0:360, 0:480]
    gradient = np.stack([x / 480 * 200 + 30, y / 360 * 150 + 50, (x + y) / 840 * 120 + 60], axis=2)
    noise = textured(360, 480, mean=0, std=12).astype(np.float64)
    data = encoded(np.clip(gradient + noise, 0, 255).astype(np.uint8))
    assert refusal(lambda: process_photo(data, encoder=dlib)).code == "no_face"


@requires_faces
def test_a_background_crop_of_a_real_photo_has_no_face(dlib: DlibEncoder) -> None:
    picture = Image.open(io.BytesIO(face_bytes(OBAMA))).crop((0, 600, 900, 1137))
    data = encoded(picture, "JPEG", quality=95)
    assert refusal(lambda: process_photo(data, encoder=dlib)).code == "no_face"


def darkened(relative: str, factor: float) -> bytes:
    rgb = np.asarray(Image.open(io.BytesIO(face_bytes(relative))).convert("RGB"))
    return encoded((rgb.astype(np.float64) * factor).astype(np.uint8))


@requires_faces
def test_a_dim_photo_is_enhanced_and_still_matches_its_owner(
    dlib: DlibEncoder, photo: Callable[[str], FaceResult]
) -> None:
    result = process_photo(darkened(OBAMA, 0.15), encoder=dlib)
    assert result.quality["enhanced"] is True
    assert result.quality["brightness"] >= QualityPolicy().min_brightness
    assert decide(result, obama=photo(OBAMA2), biden=photo(BIDEN)).best_key == "obama"
    assert distance(result, photo(OBAMA)) < 0.15


@requires_faces
def test_a_nearly_black_photo_is_refused_as_too_dark(dlib: DlibEncoder) -> None:
    error = refusal(lambda: process_photo(darkened(OBAMA, 0.02), encoder=dlib))
    assert error.code == "too_dark"
    assert error.message == "Too dark: move somewhere brighter or switch on the light."


@requires_faces
def test_exif_orientation_is_applied_before_detection(
    tmp_path: Path, dlib: DlibEncoder, photo: Callable[[str], FaceResult]
) -> None:
    upright = Image.open(io.BytesIO(face_bytes(OBAMA)))
    lying = upright.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", undoing the 90 CCW above
    path = tmp_path / "phone.jpg"
    lying.save(path, "JPEG", quality=95, exif=exif)

    result = process_photo(path.read_bytes(), encoder=dlib)
    assert result.quality["image_px"] == upright.size
    assert result.box == pytest.approx(photo(OBAMA).box, abs=6)
    assert decide(result, obama=photo(OBAMA2), biden=photo(BIDEN)).best_key == "obama"

    # Control: the same pixels without the tag show no upright face to HOG.
    without_tag = encoded(lying, "JPEG", quality=95)
    assert refusal(lambda: process_photo(without_tag, encoder=dlib)).code == "no_face"


@requires_faces
def test_a_50_megapixel_header_is_refused_with_real_dlib(dlib: DlibEncoder) -> None:
    assert refusal(lambda: process_photo(png_declaring(8000, 7000), encoder=dlib)).code == (
        "too_many_pixels"
    )


@requires_faces
def test_a_truncated_jpeg_is_refused_as_corrupt(dlib: DlibEncoder) -> None:
    data = face_bytes(OBAMA)
    error = refusal(lambda: process_photo(data[: len(data) // 2], encoder=dlib))
    assert error.code == "corrupt_image"


@requires_faces
def test_a_text_file_is_refused(dlib: DlibEncoder) -> None:
    data = (Path(__file__)).read_bytes()
    assert refusal(lambda: process_photo(data, encoder=dlib)).code == "unsupported_type"


@requires_faces
def test_an_rgba_png_enrols_and_matches_the_same_photo_as_jpeg(
    photo: Callable[[str], FaceResult],
) -> None:
    rgba = photo("tests/test_images/32bit.png")
    assert Image.open(io.BytesIO(face_bytes("tests/test_images/32bit.png"))).mode == "RGBA"
    assert distance(rgba, photo(OBAMA2)) < 0.1


@requires_faces
def test_a_240p_webcam_frame_enrols_and_matches(photo: Callable[[str], FaceResult]) -> None:
    low = photo("examples/obama-240p.jpg")
    assert low.quality["face_px"] < 80
    assert decide(low, obama=photo(OBAMA2), biden=photo(BIDEN)).best_key == "obama"


@requires_faces
def test_a_truncated_upload_is_refused_even_when_pillow_is_told_to_accept_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = face_bytes(OBAMA)
    assert refusal(lambda: decode_photo(data[: len(data) // 2])).code == "corrupt_image"
    png = encoded(textured(200, 200))
    assert refusal(lambda: decode_photo(png[: len(png) - 100])).code == "corrupt_image"


def test_loading_dlib_leaves_pillow_strict_about_truncated_files(dlib: DlibEncoder) -> None:
    dlib.locate(textured(50, 50))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
