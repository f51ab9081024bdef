"""Image enhancement that never alters evidence: pure, deterministic operations on a copy of an image.

Guarantees:
- only these operations exist (``Operation``): brightness, contrast, gamma, rotation, crop, sharpen and
  denoise. Nothing that adds content (painting, feature substitution, AI upscaling, 3D pose correction) is
  offered, and there is no way to pass one: an unknown operation or parameter is refused (``EnhancementError``);
- every parameter is validated against a fixed range and normalised (``normalise``) before use, and the
  normalised parameters are what the log records; the same original and the same list of (operation,
  normalised parameters) steps always give the same pixels, hence the same SHA-256 (``replay``). The
  implementation is integer lookup tables, ``numpy.rot90`` and fixed-kernel OpenCV filters, with no randomness
  and no dependency on the time, the user or the machine's thread count;
- a result is encoded as PNG (lossless, fixed compression level); ``EnhancedImage.sha256`` is the hash of those
  bytes and ``pixels_sha256`` the hash of the raw pixels and their shape, which does not depend on the PNG
  encoder's version (docs/examination.md, "Enhancement without altering evidence").

This module holds no state and reads no database: examination.enhancements keeps the log, the images and the
permissions.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cv2
import numpy as np

from facetrail.config import ImageLimits
from facetrail.errors import BadInputError
from facetrail.faces.decode import decode_image

PNG_COMPRESSION = 6  # fixed: the encoded bytes (and their SHA-256) depend on it
MAX_STEPS = 50  # one derived image is at most this many steps from its original


class EnhancementError(BadInputError):
    code = "enhancement_invalid"


class Operation(StrEnum):
    """The allowed operations. Nothing here adds content that was not in the original."""

    BRIGHTNESS = "brightness"  # delta: -100..100 added to every channel
    CONTRAST = "contrast"  # factor: 0.2..3.0 around mid-grey (128)
    GAMMA = "gamma"  # gamma: 0.2..5.0 (out = 255 * (in/255) ** (1/gamma))
    ROTATION = "rotation"  # degrees: 90 | 180 | 270 (clockwise; -90 = 270), exact, no interpolation
    CROP = "crop"  # x, y, width, height in pixels, inside the image
    SHARPEN = "sharpen"  # unsharp mask: amount 0.1..3.0, sigma 0.5..5.0 (default 1.0)
    DENOISE = "denoise"  # median filter: size 3 | 5 | 7


# Named only to say plainly that they are refused (an attempt reads "not offered", not "unknown").
NOT_OFFERED = ("paint", "inpaint", "feature_substitution", "upscale", "super_resolution", "pose_correction", "morph")


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer too large for a float
        return False


def _number(params: Mapping[str, Any], name: str, low: float, high: float, digits: int) -> float:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise EnhancementError(f"parameter {name!r} must be a number", field=name)
    rounded = round(float(value), digits)
    if not low <= rounded <= high:
        raise EnhancementError(f"parameter {name!r} must be between {low} and {high}", field=name)
    return rounded


def _integer(params: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value) or value != int(value):
        raise EnhancementError(f"parameter {name!r} must be a whole number", field=name)
    if not low <= int(value) <= high:
        raise EnhancementError(f"parameter {name!r} must be between {low} and {high}", field=name)
    return int(value)


_PARAMS: dict[Operation, tuple[str, ...]] = {
    Operation.BRIGHTNESS: ("delta",),
    Operation.CONTRAST: ("factor",),
    Operation.GAMMA: ("gamma",),
    Operation.ROTATION: ("degrees",),
    Operation.CROP: ("x", "y", "width", "height"),
    Operation.SHARPEN: ("amount", "sigma"),
    Operation.DENOISE: ("size",),
}


def parse_operation(name: str) -> Operation:
    text = str(name).strip().lower()
    if text in NOT_OFFERED:
        raise EnhancementError(
            f"{text!r} is not offered: it would add content that is not in the original", field="operation"
        )
    try:
        return Operation(text)
    except ValueError:
        allowed = ", ".join(o.value for o in Operation)
        raise EnhancementError(f"unknown operation {text!r}; allowed: {allowed}", field="operation") from None


def normalise(operation: Operation | str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The operation's parameters, checked and rounded as they are applied and logged."""
    op = parse_operation(operation) if not isinstance(operation, Operation) else operation
    if not isinstance(params, Mapping):
        raise EnhancementError("parameters must be an object", field="parameters")
    extra = sorted(set(params) - set(_PARAMS[op]))
    if extra:
        raise EnhancementError(f"{op.value} takes {list(_PARAMS[op])}, not {extra}", field="parameters")
    if op is Operation.BRIGHTNESS:
        return {"delta": _integer(params, "delta", -100, 100)}
    if op is Operation.CONTRAST:
        return {"factor": _number(params, "factor", 0.2, 3.0, 2)}
    if op is Operation.GAMMA:
        return {"gamma": _number(params, "gamma", 0.2, 5.0, 2)}
    if op is Operation.ROTATION:
        degrees = _integer(params, "degrees", -270, 270)
        if degrees % 90 or degrees == 0:
            raise EnhancementError("rotation is by 90, 180 or 270 degrees", field="degrees")
        return {"degrees": degrees % 360}
    if op is Operation.CROP:
        return {name: _integer(params, name, 0, 100_000) for name in ("x", "y", "width", "height")}
    if op is Operation.SHARPEN:
        sigma = _number({"sigma": params.get("sigma", 1.0)}, "sigma", 0.5, 5.0, 1)
        return {"amount": _number(params, "amount", 0.1, 3.0, 2), "sigma": sigma}
    size = _integer(params, "size", 3, 7)
    if size not in (3, 5, 7):
        raise EnhancementError("the de-noising filter size is 3, 5 or 7", field="size")
    return {"size": size}


def _lut(values: Iterable[float]) -> np.ndarray:
    return np.clip(np.rint(np.fromiter(values, dtype=np.float64, count=256)), 0, 255).astype(np.uint8)


def apply(pixels: np.ndarray, operation: Operation | str, params: Mapping[str, Any]) -> np.ndarray:
    """One step on BGR (or grey) uint8 pixels; a new array, the input is never changed."""
    op = parse_operation(operation) if not isinstance(operation, Operation) else operation
    p = normalise(op, params)
    if op is Operation.BRIGHTNESS:
        return cv2.LUT(pixels, _lut(i + p["delta"] for i in range(256)))
    if op is Operation.CONTRAST:
        return cv2.LUT(pixels, _lut((i - 128) * p["factor"] + 128 for i in range(256)))
    if op is Operation.GAMMA:
        return cv2.LUT(pixels, _lut(255.0 * (i / 255.0) ** (1.0 / p["gamma"]) for i in range(256)))
    if op is Operation.ROTATION:
        return np.ascontiguousarray(np.rot90(pixels, k=-(p["degrees"] // 90)))  # clockwise
    if op is Operation.CROP:
        height, width = pixels.shape[:2]
        x, y, w, h = p["x"], p["y"], p["width"], p["height"]
        if w < 8 or h < 8 or x + w > width or y + h > height:
            raise EnhancementError(
                f"the crop ({x},{y} {w}x{h}) must be at least 8x8 and inside the {width}x{height} image", field="crop"
            )
        return pixels[y : y + h, x : x + w].copy()
    if op is Operation.SHARPEN:
        blurred = cv2.GaussianBlur(pixels, (0, 0), sigmaX=p["sigma"], sigmaY=p["sigma"])
        return cv2.addWeighted(pixels, 1.0 + p["amount"], blurred, -p["amount"], 0)
    return cv2.medianBlur(pixels, p["size"])


@dataclass(frozen=True)
class EnhancedImage:
    png: bytes
    sha256: str  # of the PNG bytes: the derived image's identity in the store
    pixels_sha256: str  # of the pixels and their shape: independent of the PNG encoder
    width: int
    height: int


def pixels_hash(pixels: np.ndarray) -> str:
    header = f"{pixels.dtype.str}:{'x'.join(str(n) for n in pixels.shape)}:".encode()
    return hashlib.sha256(header + np.ascontiguousarray(pixels).tobytes()).hexdigest()


def encode(pixels: np.ndarray) -> EnhancedImage:
    ok, data = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 array
        raise EnhancementError("the enhanced image could not be encoded")
    png = data.tobytes()
    return EnhancedImage(png, hashlib.sha256(png).hexdigest(), pixels_hash(pixels), pixels.shape[1], pixels.shape[0])


def decode(data: bytes, limits: ImageLimits) -> np.ndarray:
    """An original's pixels as every enhancement sees them (the configured decoder: upright, BGR)."""
    return decode_image(data, limits).pixels


def replay(original: bytes, steps: Iterable[tuple[str, Mapping[str, Any]]], limits: ImageLimits) -> EnhancedImage:
    """The image that ``steps`` make from ``original``: what the log says was done, done again."""
    pixels = decode(original, limits)
    for count, (operation, params) in enumerate(steps, start=1):
        if count > MAX_STEPS:
            raise EnhancementError(f"at most {MAX_STEPS} steps from an original", field="steps")
        pixels = apply(pixels, operation, params)
    return encode(pixels)
