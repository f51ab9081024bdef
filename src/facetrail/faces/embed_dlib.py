"""dlib's ResNet face descriptor (128-d), and its score-level fusion with SFace.

dlib aligns with its own 5-point shape predictor (run inside our detector's box) and ``get_face_chip``
(150 px, padding 0.25), exactly as the ``face_recognition`` package does; its descriptors are made for
Euclidean distance, which for L2-normalised vectors is a monotone function of the cosine we use.

Fusion concatenates ``w·sface ⊕ √(1−w²)·dlib``: both parts are unit vectors, so the fused vector is unit
too and its inner product with another fused vector is ``w²·cos_sface + (1−w²)·cos_dlib``. The fused
score therefore works unchanged in any inner-product index. ``w`` was chosen on LFW View 1 (DevTrain),
never on the View 2 test folds (docs/accuracy.md).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from facetrail.errors import ModelError
from facetrail.faces.types import DetectedFace, FaceEmbedder, l2_normalise
from facetrail.faces.weights import file_sha256, model_id

CHIP_SIZE = 150
CHIP_PADDING = 0.25
# Weight of SFace in the fusion (its share of the score is FUSION_WEIGHT²): the best DevTrain accuracy of the
# grid 0, 0.05, .., 1 (`facetrail eval fusion-weight`). It is low because dlib cosines spread over a narrow
# range (~0.75-1.0) while SFace cosines span ~-0.2-1.0: w² = 0.16 still gives SFace much of the say.
FUSION_WEIGHT = 0.4


def _load_dlib() -> tuple[Any, Any, Any, str]:
    try:
        import dlib
        import face_recognition_models as frm
    except ModuleNotFoundError:
        raise ModelError(
            "the dlib embedder needs 'dlib-bin' and 'face-recognition-models': pip install 'facetrail[dlib]'"
        ) from None
    recognizer_path = frm.face_recognition_model_location()
    try:
        predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        recognizer = dlib.face_recognition_model_v1(recognizer_path)
    except RuntimeError as exc:
        raise ModelError(f"dlib models could not be loaded: {exc}") from None
    return dlib, predictor, recognizer, file_sha256(recognizer_path)


class DlibEmbedder:
    """dlib_face_recognition_resnet_model_v1 on dlib's own 150 px face chip."""

    dim = 128

    def __init__(self) -> None:
        self._dlib, self._predictor, self._recognizer, sha = _load_dlib()
        self.model_id = model_id("dlib-resnet-v1", sha)

    def _shape(self, image_rgb: np.ndarray, face: DetectedFace) -> Any:
        x, y, w, h = face.box
        rect = self._dlib.rectangle(round(x), round(y), round(x + w), round(y + h))
        return self._predictor(image_rgb, rect)

    def _chip_rgb(self, image_rgb: np.ndarray, face: DetectedFace) -> np.ndarray:
        shape = self._shape(image_rgb, face)
        return np.asarray(self._dlib.get_face_chip(image_rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def aligned_crop(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        return np.ascontiguousarray(self._chip_rgb(rgb, face)[:, :, ::-1])

    def embed(self, image_bgr: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.dim), np.float32)
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        chips = [self._chip_rgb(rgb, f) for f in faces]
        descriptors = self._recognizer.compute_face_descriptor(chips)
        return l2_normalise(np.array([np.asarray(d) for d in descriptors], dtype=np.float32))


def fusion_model_id(sface_id: str, dlib_id: str, weight: float) -> str:
    """Names both models and the weight; the hash pins both models' exact weights."""
    name = f"fusion-w{weight:.2f}-{sface_id.split('@')[0]}-{dlib_id.split('@')[0]}"
    return model_id(name, hashlib.sha256(f"{sface_id}|{dlib_id}|{weight:.4f}".encode()).hexdigest())


def fuse(sface_vectors: np.ndarray, dlib_vectors: np.ndarray, weight: float) -> np.ndarray:
    """Rows ``w·a ⊕ √(1−w²)·b`` of two sets of unit vectors (unit again; inner product = weighted cosine)."""
    a = weight * np.asarray(sface_vectors, np.float32)
    b = math.sqrt(1.0 - weight * weight) * np.asarray(dlib_vectors, np.float32)
    return np.concatenate([a, b], axis=1).astype(np.float32)


class FusionEmbedder:
    """SFace and dlib, fused at score level (see the module docstring)."""

    def __init__(self, sface: FaceEmbedder, weight: float = FUSION_WEIGHT, dlib: DlibEmbedder | None = None) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ModelError(f"fusion weight must be in [0, 1], got {weight}")
        self.sface = sface
        self.dlib = dlib or DlibEmbedder()
        self.weight = weight
        self.dim = sface.dim + self.dlib.dim
        self.model_id = fusion_model_id(sface.model_id, self.dlib.model_id, weight)

    def aligned_crop(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        return self.sface.aligned_crop(image_bgr, face)  # the ArcFace-template crop: used for quality checks

    def embed(self, image_bgr: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.dim), np.float32)
        return fuse(self.sface.embed(image_bgr, faces), self.dlib.embed(image_bgr, faces), self.weight)
