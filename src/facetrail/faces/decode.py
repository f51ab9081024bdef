"""Decode untrusted image bytes into upright BGR pixels, or refuse with an error that names the problem.

The format is sniffed from the bytes (Pillow's magic-number detection), never the file name. Size limits are
checked before any pixel is decoded: the file size first, then width×height from the header, which stops
decompression bombs without allocating their pixels.

Memory is bounded further for images within the limits: at most ``images.max_concurrent_decodes`` decodes
run at once per process, and an image over ``images.decode_max_pixels`` comes out reduced (a JPEG is decoded
at 1/2, 1/4 or 1/8 scale by libjpeg itself, so its full size is never held; other formats are reduced right
after decoding). tests/adversarial/test_resource_bombs.py fires 16 concurrent bombs at a real server.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import io
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
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


_DECODERS: dict[int, ThreadPoolExecutor] = {}
_DECODERS_LOCK = threading.Lock()


def _forget_decoders_after_fork() -> None:
    # A forked child (enrolment and evaluation worker pools) inherits the parent's pools but not their threads:
    # work submitted to them would wait forever. The child starts its own pools, and a fresh lock.
    global _DECODERS_LOCK
    _DECODERS.clear()
    _DECODERS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_decoders_after_fork)


def _decoders(size: int) -> ThreadPoolExecutor:
    """The process-wide pool of that many decoding threads (one pool per configured size).

    A pool rather than a semaphore: the allocator keeps freed memory per thread arena, so if any of a server's
    request threads could decode, each would keep a full decode's worth of memory resident. Decoding only
    on these few threads bounds both the concurrent work and what stays resident afterwards.
    """
    with _DECODERS_LOCK:
        pool = _DECODERS.get(size)
        if pool is None:
            pool = _DECODERS[size] = ThreadPoolExecutor(max(1, size), thread_name_prefix="facetrail-decode")
        return pool


def _reduction(width: int, height: int, max_pixels: int) -> int:
    """The smallest integer factor that brings width×height within max_pixels (1 = none)."""
    if width * height <= max_pixels:
        return 1
    return math.ceil(math.sqrt(width * height / max_pixels))


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
    pixels, exif_transposed = (
        _decoders(limits.max_concurrent_decodes).submit(_decode_bounded, img, fmt, limits).result()
    )
    return DecodedImage(
        pixels=pixels,
        format=fmt,
        original_mode=original_mode,
        sha256=hashlib.sha256(data).hexdigest(),
        byte_size=len(data),
        exif_transposed=bool(exif_transposed),
    )


def _decode_bounded(img: Image.Image, fmt: str, limits: ImageLimits) -> tuple[np.ndarray, bool]:
    """_decode_pixels, then hand a large decode's freed memory back to the system at once (glibc keeps it
    otherwise, and a few bombs would leave the process holding their peak for good)."""
    try:
        return _decode_pixels(img, fmt, limits)
    finally:
        if img.width * img.height > limits.decode_max_pixels // 4 and _LIBC is not None:
            _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_LIBC = _load_libc()


def _decode_pixels(img: Image.Image, fmt: str, limits: ImageLimits) -> tuple[np.ndarray, bool]:
    """Decode (within a decode slot), orient, convert and, if over decode_max_pixels, reduce."""
    width, height = img.size
    factor = _reduction(width, height, limits.decode_max_pixels)
    if factor > 1 and fmt in ("JPEG", "MPO"):
        # libjpeg decodes at 1/2, 1/4 or 1/8 directly; draft picks the largest of those at least this size.
        img.draft(img.mode, (math.ceil(width / factor), math.ceil(height / factor)))
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animated GIF/WebP/TIFF: the first frame only
        img.load()
    except Exception as exc:
        if _says_truncated(exc):
            raise TruncatedImageError(f"image data is truncated: {_describe(exc)}") from None
        raise CorruptImageError(f"image data is corrupt: {_describe(exc)}") from None

    orientation = _orientation(img)
    transposed = img
    if orientation not in (None, 1):  # exif_transpose copies the image even when there is nothing to turn
        try:
            transposed = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block should not lose an otherwise good photo
            transposed = img
    exif_transposed = (transposed is not img and transposed.size != img.size) or orientation not in (None, 1)
    try:
        rgb = _to_rgb(transposed)
    except Exception as exc:
        raise CorruptImageError(f"image pixels could not be converted: {_describe(exc)}") from None
    del transposed, img  # the full-size decode is no longer needed once converted
    remaining = _reduction(rgb.width, rgb.height, limits.decode_max_pixels)
    if remaining > 1:
        rgb = rgb.reduce(remaining)
    # RGB → BGR in one vectorised pass (a negative-stride numpy copy took ~4 ms per megapixel; this ~0.1 ms)
    pixels = cv2.cvtColor(np.asarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    return pixels, bool(exif_transposed)


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
