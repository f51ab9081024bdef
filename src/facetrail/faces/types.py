"""Typed results of each pipeline stage."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Verdict = Literal["pass", "warn", "fail"]
LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")  # subject's right = image left


@dataclass(frozen=True)
class DecodedImage:
    """Pixels in BGR uint8 (OpenCV order), upright (EXIF orientation applied)."""

    pixels: np.ndarray
    format: str  # as sniffed from the bytes: JPEG, PNG, WEBP, ...
    original_mode: str
    sha256: str
    byte_size: int
    exif_transposed: bool

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class DetectedFace:
    """One face: box (x, y, w, h), five landmarks (x, y) in LANDMARK_NAMES order, confidence."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray  # shape (5, 2), float32, original-image pixels
    score: float

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[0] - self.landmarks[1]))

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])


@dataclass(frozen=True)
class QualityReport:
    verdict: Verdict
    reasons: list[str]
    eye_distance_px: float
    sharpness: float
    brightness: float
    clipped_fraction: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    detection_score: float
    # what LFW probes of this quality did (faces.quality_expectations; empty when no table ships for the model)
    expectations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "expectations": list(self.expectations),
            "measures": {
                "eye_distance_px": round(self.eye_distance_px, 2),
                "sharpness": round(self.sharpness, 2),
                "brightness": round(self.brightness, 2),
                "clipped_fraction": round(self.clipped_fraction, 4),
                "yaw_deg": round(self.yaw_deg, 1),
                "pitch_deg": round(self.pitch_deg, 1),
                "roll_deg": round(self.roll_deg, 1),
                "detection_score": round(self.detection_score, 4),
            },
        }


@dataclass(frozen=True)
class Embedding:
    """An L2-normalised vector and the id of the model that made it (name + weights hash)."""

    vector: np.ndarray  # float32, shape (d,)
    model_id: str
    extras: dict[str, np.ndarray] = field(default_factory=dict)


class FaceEmbedder(Protocol):
    model_id: str
    dim: int

    def aligned_crop(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The aligned face the model sees (BGR uint8), also used for quality and thumbnails."""
        ...

    def embed(self, image_bgr: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
        """(len(faces), dim) float32, each row L2-normalised."""
        ...


@runtime_checkable
class CropEmbedder(FaceEmbedder, Protocol):
    """An embedder whose input is the aligned crop alone, so crops of many images can share a forward pass."""

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(len(crops), dim) float32, each row L2-normalised."""
        ...


def eye_roll(landmarks: np.ndarray) -> float:
    """The eye line's angle in degrees, in image coordinates (y down): 0 for a level face, positive when the
    image-right eye is lower. ``landmarks`` in LANDMARK_NAMES order (the first two are the eyes)."""
    dx, dy = np.asarray(landmarks[1], np.float64) - landmarks[0]
    return math.degrees(math.atan2(dy, dx))


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
