"""Decoding untrusted bytes: every accepted format, EXIF orientation, and a specific error for every bad input."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from face_fixtures import OBAMA, WEBP_NAMED_JPG, cosine, encode
from facetrail.config import ImageLimits
from facetrail.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    ImageTooManyPixelsError,
    ImageTooSmallError,
    TruncatedImageError,
    UnsupportedFormatError,
)
from facetrail.faces.decode import decode_image, read_image_bytes

LIMITS = ImageLimits()  # type: ignore[call-arg]
FIXTURES = Path(__file__).parent / "fixtures"
SMALL_JPEG = FIXTURES / "dlib" / "johns" / "John_Simm" / "000288_00470387.jpg"  # 150×150, real face
SMALL_PNG = FIXTURES / "faceapi" / "amy" / "amy1.png"  # 150×150 grayscale PNG, real face


def _bgr(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)[:, :, ::-1]


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _assert_upright_bgr(decoded_pixels: np.ndarray, reference_bgr: np.ndarray, tolerance: float) -> None:
    assert decoded_pixels.dtype == np.uint8
    assert decoded_pixels.ndim == 3 and decoded_pixels.shape[2] == 3
    assert decoded_pixels.shape == reference_bgr.shape
    assert decoded_pixels.flags["C_CONTIGUOUS"]
    assert _mean_abs_diff(decoded_pixels, reference_bgr) < tolerance


# --- accepted formats -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params", "expected_format", "tolerance"),
    [
        ("JPEG", {"quality": 95}, "JPEG", 4.0),
        ("PNG", {}, "PNG", 0.01),
        ("WEBP", {"quality": 95}, "WEBP", 5.0),
        ("WEBP", {"lossless": True}, "WEBP", 0.01),
        ("BMP", {}, "BMP", 0.01),
        ("TIFF", {}, "TIFF", 0.01),
        ("TIFF", {"compression": "tiff_lzw"}, "TIFF", 0.01),
    ],
)
def test_rgb_formats_decode_to_bgr(
    obama_rgb: Image.Image, fmt: str, params: dict, expected_format: str, tolerance: float
) -> None:
    decoded = decode_image(encode(obama_rgb, fmt, **params), LIMITS)
    assert decoded.format == expected_format
    # channel order matters: a swapped decoder would differ by far more than compression noise
    _assert_upright_bgr(decoded.pixels, _bgr(obama_rgb), tolerance)
    assert not decoded.exif_transposed


def test_channel_order_is_bgr() -> None:
    red = Image.new("RGB", (32, 32), (255, 0, 0))
    decoded = decode_image(encode(red, "PNG"), LIMITS)
    assert decoded.pixels[0, 0].tolist() == [0, 0, 255]


def test_heic_decodes(obama_rgb: Image.Image) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif build has no HEIF encoder")
    data = encode(obama_rgb, "HEIF", quality=90)
    decoded = decode_image(data, LIMITS)
    assert decoded.format == "HEIF"
    _assert_upright_bgr(decoded.pixels, _bgr(obama_rgb), 6.0)


def test_gif_first_frame_only(obama_rgb: Image.Image) -> None:
    first = obama_rgb.quantize(colors=256)
    second = Image.new("RGB", obama_rgb.size, (0, 0, 0)).quantize(colors=2)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as check:
        assert check.n_frames == 2
    decoded = decode_image(data, LIMITS)
    assert decoded.format == "GIF"
    _assert_upright_bgr(decoded.pixels, _bgr(first), 0.5)


def test_grayscale(obama_rgb: Image.Image) -> None:
    gray = obama_rgb.convert("L")
    decoded = decode_image(encode(gray, "PNG"), LIMITS)
    assert decoded.original_mode == "L"
    _assert_upright_bgr(decoded.pixels, _bgr(gray), 0.01)
    assert np.array_equal(decoded.pixels[:, :, 0], decoded.pixels[:, :, 2])


def test_palette(obama_rgb: Image.Image) -> None:
    palette = obama_rgb.quantize(colors=64)
    decoded = decode_image(encode(palette, "PNG"), LIMITS)
    assert decoded.original_mode == "P"
    _assert_upright_bgr(decoded.pixels, _bgr(palette), 0.01)


def test_rgba_is_composited_on_white(obama_rgb: Image.Image) -> None:
    rgba = obama_rgb.convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[:, : rgba.width // 4] = 0  # a transparent left strip
    rgba.putalpha(Image.fromarray(alpha))
    decoded = decode_image(encode(rgba, "PNG"), LIMITS)
    assert decoded.original_mode == "RGBA"
    assert decoded.pixels.flags["C_CONTIGUOUS"]
    assert (decoded.pixels[:, : rgba.width // 4] == 255).all()
    opaque = slice(rgba.width // 4, None)
    assert _mean_abs_diff(decoded.pixels[:, opaque], _bgr(obama_rgb)[:, opaque]) < 0.01


def test_16bit_grayscale_png(obama_rgb: Image.Image) -> None:
    gray8 = np.asarray(obama_rgb.convert("L"), dtype=np.uint16)
    data = encode(Image.fromarray(gray8 * 257), "PNG")  # full 16-bit range
    decoded = decode_image(data, LIMITS)
    assert decoded.original_mode.startswith("I")
    _assert_upright_bgr(decoded.pixels, np.repeat(gray8.astype(np.uint8)[:, :, None], 3, axis=2), 1.0)


def test_16bit_colour_png(obama_rgb: Image.Image) -> None:
    bgr8 = _bgr(obama_rgb)
    ok, buf = cv2.imencode(".png", bgr8.astype(np.uint16) * 257)
    assert ok
    decoded = decode_image(buf.tobytes(), LIMITS)
    assert decoded.format == "PNG"
    _assert_upright_bgr(decoded.pixels, bgr8, 1.0)


def test_cmyk_jpeg(obama_rgb: Image.Image) -> None:
    cmyk = obama_rgb.convert("CMYK")
    decoded = decode_image(encode(cmyk, "JPEG", quality=95), LIMITS)
    assert decoded.original_mode == "CMYK"
    _assert_upright_bgr(decoded.pixels, _bgr(obama_rgb), 6.0)


def test_format_sniffed_from_bytes_not_name(tmp_path: Path, obama_rgb: Image.Image) -> None:
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(encode(obama_rgb, "PNG"))
    decoded = decode_image(read_image_bytes(path, LIMITS), LIMITS)
    assert decoded.format == "PNG"


def test_deepface_img47_is_webp(pipeline) -> None:
    decoded = pipeline.decode_path(WEBP_NAMED_JPG)
    assert decoded.format == "WEBP"
    assert decoded.pixels.shape == (1800, 1350, 3)
    assert len(pipeline.detect(decoded)) >= 1


def test_sha256_and_size_describe_the_bytes() -> None:
    data = SMALL_JPEG.read_bytes()
    decoded = decode_image(data, LIMITS)
    assert decoded.sha256 == hashlib.sha256(data).hexdigest()
    assert decoded.byte_size == len(data)


# --- EXIF orientation -------------------------------------------------------------------------------------

# How the camera stored an upright scene for each Orientation tag: the inverse of what the viewer must do.
STORED_AS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # tag 6 = "rotate 90° clockwise to view"; stored turned counter-clockwise
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(pipeline, obama_rgb: Image.Image, orientation: int) -> None:
    stored = obama_rgb.transpose(STORED_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    rotated = pipeline.decode(encode(stored, "JPEG", quality=95, exif=exif))
    upright = pipeline.decode(encode(obama_rgb, "JPEG", quality=95))

    assert rotated.exif_transposed
    assert rotated.pixels.shape == upright.pixels.shape
    assert _mean_abs_diff(rotated.pixels, upright.pixels) < 4.0
    face_rotated, n_rotated = pipeline.analyze_one(rotated)
    face_upright, _ = pipeline.analyze_one(upright)
    assert n_rotated == 1
    assert cosine(face_rotated.embedding.vector, face_upright.embedding.vector) > 0.95
    assert abs(face_rotated.quality.roll_deg) < 10  # the face is upright, not lying on its side


def test_ignoring_orientation_would_matter(pipeline, obama_rgb: Image.Image) -> None:
    """Control for the test above: the stored (sideways) pixels really do differ from the upright image."""
    stored = obama_rgb.transpose(STORED_AS[6])
    without_tag = pipeline.decode(encode(stored, "JPEG", quality=95))
    assert not without_tag.exif_transposed
    assert without_tag.pixels.shape[:2] == (obama_rgb.width, obama_rgb.height)


# --- bad input: each class has its own error and a message naming the problem ----------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring width×height, a tiny IDAT, and no real pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def test_empty() -> None:
    with pytest.raises(EmptyImageError, match="empty"):
        decode_image(b"", LIMITS)


@pytest.mark.parametrize("cut", [5000, 140_000], ids=["in_header", "in_pixel_data"])
def test_truncated_jpeg(cut: int) -> None:
    data = OBAMA.read_bytes()  # 280 kB, with a ~20 kB EXIF header
    with pytest.raises(TruncatedImageError, match="truncated"):
        decode_image(data[:cut], LIMITS)


def test_truncated_png(obama_rgb: Image.Image) -> None:
    data = encode(obama_rgb, "PNG")
    with pytest.raises(CorruptImageError, match=r"truncated|corrupt") as info:
        decode_image(data[: len(data) // 2], LIMITS)
    assert info.value.code in ("image_truncated", "image_corrupt")


def test_corrupt_jpeg_body() -> None:
    data = bytearray(SMALL_JPEG.read_bytes())
    header_end = 600
    data[header_end:] = bytes(len(data) - header_end)  # valid header, zeroed entropy-coded data and no EOI
    with pytest.raises(CorruptImageError) as info:
        decode_image(bytes(data), LIMITS)
    assert info.value.message


def test_corrupt_png_header() -> None:
    data = bytearray(SMALL_PNG.read_bytes())
    data[16:24] = b"\xff" * 8  # width/height in IHDR overwritten: the CRC no longer matches
    with pytest.raises(CorruptImageError, match="corrupt"):
        decode_image(bytes(data), LIMITS)


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is a text file and not an image\n" * 4,
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 4,
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(100),  # zip
        b"\x00" * 256,
    ],
    ids=["text", "pdf", "zip", "zeros"],
)
def test_non_image(data: bytes) -> None:
    with pytest.raises(UnsupportedFormatError, match="not a recognised image") as info:
        decode_image(data, LIMITS)
    assert info.value.code == "image_unsupported_format"


def test_over_byte_limit() -> None:
    data = SMALL_JPEG.read_bytes()
    limits = ImageLimits(max_bytes=len(data) - 1)  # type: ignore[call-arg]
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        decode_image(data, limits)


def test_over_byte_limit_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(SMALL_JPEG.read_bytes())
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        read_image_bytes(path, ImageLimits(max_bytes=100))  # type: ignore[call-arg]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="not found"):
        read_image_bytes(tmp_path / "nope.jpg", LIMITS)
    with pytest.raises(ImageNotFoundError, match="not a regular file"):
        read_image_bytes(tmp_path, LIMITS)


def test_decompression_bomb_refused_from_header() -> None:
    # 30000×30000 RGB would need 2.7 GB. The file holds no pixel data at all, so refusing it with a pixel-count
    # error (rather than a truncation error) shows the header was checked before any decoding or allocation.
    data = _png_header_only(30000, 30000)
    assert len(data) < 100
    with pytest.raises(ImageTooManyPixelsError, match="decompression bomb") as info:
        decode_image(data, LIMITS)
    assert info.value.details["width"] == 30000


def test_over_pixel_limit() -> None:
    data = SMALL_JPEG.read_bytes()  # 150×150
    with pytest.raises(ImageTooManyPixelsError, match="22,500 pixels"):
        decode_image(data, ImageLimits(max_pixels=150 * 150 - 1))  # type: ignore[call-arg]


def test_too_small() -> None:
    tiny = Image.fromarray(np.full((8, 12, 3), 128, np.uint8))
    with pytest.raises(ImageTooSmallError, match="too small") as info:
        decode_image(encode(tiny, "PNG"), LIMITS)
    assert info.value.code == "image_too_small"


def test_errors_are_bad_input_with_exit_code_3() -> None:
    with pytest.raises(ImageError) as info:
        decode_image(b"", LIMITS)
    assert info.value.exit_code == 3
    assert info.value.to_dict()["code"] == "image_empty"


# --- property tests: hostile bytes only ever raise ImageError ---------------------------------------------

FUZZ_LIMITS = ImageLimits(max_pixels=200_000, max_bytes=1_000_000)  # type: ignore[call-arg]


def _real_samples() -> list[bytes]:
    with Image.open(SMALL_JPEG) as im:
        rgb = im.convert("RGB")
    return [
        SMALL_JPEG.read_bytes(),
        SMALL_PNG.read_bytes(),
        encode(rgb, "WEBP", quality=80),
        encode(rgb, "GIF"),
        encode(rgb, "BMP"),
        encode(rgb, "TIFF", compression="tiff_lzw"),
    ]


REAL_SAMPLES = _real_samples()
FUZZ_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_image_error(data: bytes) -> None:
    try:
        decoded = decode_image(data, FUZZ_LIMITS)
    except ImageError as exc:
        assert exc.message
        return
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.ndim == 3 and decoded.pixels.shape[2] == 3


@FUZZ_SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _decode_or_image_error(data)


@FUZZ_SETTINGS
@given(st.sampled_from(REAL_SAMPLES), st.floats(0.0, 1.0))
def test_truncations(sample: bytes, fraction: float) -> None:
    _decode_or_image_error(sample[: int(len(sample) * fraction)])


@FUZZ_SETTINGS
@given(
    st.sampled_from(REAL_SAMPLES), st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 7)), min_size=1, max_size=8)
)
def test_bit_flips(sample: bytes, flips: list[tuple[float, int]]) -> None:
    data = bytearray(sample)
    for position, bit in flips:
        data[min(int(position * len(data)), len(data) - 1)] ^= 1 << bit
    _decode_or_image_error(bytes(data))


@FUZZ_SETTINGS
@given(st.sampled_from(REAL_SAMPLES), st.integers(0, 64), st.binary(min_size=1, max_size=64))
def test_header_overwrites(sample: bytes, offset: int, garbage: bytes) -> None:
    data = bytearray(sample)
    data[offset : offset + len(garbage)] = garbage
    _decode_or_image_error(bytes(data))


def _decode_in_child(data: bytes) -> tuple[int, int]:
    decoded = decode_image(data, LIMITS)
    return decoded.width, decoded.height


def test_a_forked_worker_decodes_after_its_parent_did() -> None:
    """Enrolment and the evaluations decode in forked worker processes. A child inherits the parent's decode pool
    but not its threads; before the pools were forgotten at fork, the child's first decode waited forever (an
    LFW evaluation hung in CI)."""
    import multiprocessing

    data = OBAMA.read_bytes()
    parent = decode_image(data, LIMITS)  # the parent's decode pool now exists, with its threads
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(_decode_in_child, (data,))
        assert result.get(timeout=60) == (parent.width, parent.height)
