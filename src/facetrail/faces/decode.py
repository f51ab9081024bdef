"""Decode untrusted image bytes into upright BGR pixels, or refuse with an error that names the problem.

The format is sniffed from the bytes (Pillow's magic-number detection), never the file name. Size limits are
checked before any pixel is decoded: the file size first, then width×height from the header, which stops
decompression bombs without allocating their pixels.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facetrail.config import ImageLimits
from facetrail.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    ImageTooManyPixelsError,
    ImageTooSmallError,
    TruncatedImageError,
    UnsupportedFormatError,
)
from facetrail.faces.types import DecodedImage

try:  # HEIC/HEIF phone photos, when the wheel is available.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_SUPPORTED = True
except Exception:  # pragma: no cover - optional
    HEIF_SUPPORTED = False

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "DIB", "GIF", "TIFF", "HEIF", "AVIF"})
# Pillow's own bomb check is replaced by ours (which names the configured limit); disable its global one.
Image.MAX_IMAGE_PIXELS = None
# Pillow warns about damaged metadata (malformed EXIF, oversized TIFF tags) and reads on; so do we. A filter
# set once is thread-safe, unlike catch_warnings around each call.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


def read_image_bytes(path: str | Path, limits: ImageLimits) -> bytes:
    """Read a local file, refusing it before reading if it is over the size limit."""
    p = Path(path)
    if not p.exists():
        raise ImageNotFoundError(f"file not found: {p}", path=str(p))
    if not p.is_file():
        raise ImageNotFoundError(f"not a regular file: {p}", path=str(p))
    size = p.stat().st_size
    if size > limits.max_bytes:
        raise ImageTooLargeError(
            f"file is {size:,} bytes, over the limit of {limits.max_bytes:,} bytes", size=size, limit=limits.max_bytes
        )
    return p.read_bytes()


def decode_image(data: bytes, limits: ImageLimits) -> DecodedImage:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CorruptImageError(f"expected image bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise EmptyImageError("image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            f"image is {len(data):,} bytes, over the limit of {limits.max_bytes:,} bytes",
            size=len(data),
            limit=limits.max_bytes,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        looks_like = _magic_format(data)
        if looks_like:  # a known signature that Pillow rejected: a damaged file, not an unknown format
            raise CorruptImageError(f"image header is corrupt (the bytes start like {looks_like})") from None
        raise UnsupportedFormatError(
            "not a recognised image (accepted: JPEG, PNG, WebP, BMP, GIF, TIFF"
            + (", HEIC/HEIF" if HEIF_SUPPORTED else "")
            + ")"
        ) from None
    except Exception as exc:  # Pillow raises many types on hostile headers
        if _says_truncated(exc):
            raise TruncatedImageError(f"image is truncated within its header: {_describe(exc)}") from None
        raise CorruptImageError(f"image header is corrupt: {_describe(exc)}") from None

    fmt = (img.format or "").upper()
    if fmt not in ACCEPTED_FORMATS:
        raise UnsupportedFormatError(f"image format {fmt or 'unknown'} is not accepted", format=fmt)
    width, height = img.size
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"image header gives an impossible size {width}×{height}")
    if width * height > limits.max_pixels:
        raise ImageTooManyPixelsError(
            f"image is {width}×{height} = {width * height:,} pixels, over the limit of {limits.max_pixels:,} "
            "(possible decompression bomb)",
            width=width,
            height=height,
            limit=limits.max_pixels,
        )
    if min(width, height) < limits.min_side:
        raise ImageTooSmallError(
            f"image is {width}×{height}, too small: at least {limits.min_side} pixels per side are needed",
            width=width,
            height=height,
            limit=limits.min_side,
        )
    original_mode = img.mode
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animated GIF/WebP/TIFF: the first frame only
        img.load()
    except Exception as exc:
        if _says_truncated(exc):
            raise TruncatedImageError(f"image data is truncated: {_describe(exc)}") from None
        raise CorruptImageError(f"image data is corrupt: {_describe(exc)}") from None

    try:
        transposed = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not lose an otherwise good photo
        transposed = img
    exif_transposed = (transposed is not img and transposed.size != img.size) or _orientation(img) not in (None, 1)
    try:
        rgb = _to_rgb(transposed)
    except Exception as exc:
        raise CorruptImageError(f"image pixels could not be converted: {_describe(exc)}") from None
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[:, :, ::-1])  # RGB → BGR
    return DecodedImage(
        pixels=pixels,
        format=fmt,
        original_mode=original_mode,
        sha256=hashlib.sha256(data).hexdigest(),
        byte_size=len(data),
        exif_transposed=bool(exif_transposed),
    )


_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _magic_format(data: bytes) -> str | None:
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF"
    return None


def _orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(0x0112)
        return int(value) if value is not None else None
    except Exception:
        return None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Every mode to 8-bit RGB. Alpha is composited on white (transparent backgrounds are usually white)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / 65535.0 if hi > 255 else 1.0
        arr8 = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr8 = np.zeros(arr.shape, np.uint8) if hi <= lo else ((arr - lo) / (hi - lo) * 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return img
    return img.convert("RGB")  # L, P, CMYK, YCbCr, LAB, 1, RGBX, ...


def _says_truncated(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("truncated", "end of file", "premature", "unexpected end"))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]
