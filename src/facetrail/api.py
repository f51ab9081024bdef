"""The small public API: detect, embed, verify. Paths or bytes in, plain results out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrail.config import Settings
from facetrail.faces.calibration import load_calibration
from facetrail.faces.pipeline import AnalyzedFace, FacePipeline, get_pipeline
from facetrail.faces.types import DecodedImage

ImageSource = str | Path | bytes


def _decode(pipeline: FacePipeline, source: ImageSource) -> DecodedImage:
    if isinstance(source, bytes | bytearray):
        return pipeline.decode(bytes(source))
    return pipeline.decode_path(source)


def detect_faces(source: ImageSource, settings: Settings | None = None) -> list[AnalyzedFace]:
    """Every face (largest first) with box, 5 landmarks, detector score and a quality verdict."""
    pipeline = get_pipeline(settings)
    return pipeline.analyze(_decode(pipeline, source), embed=False)


def embed_faces(source: ImageSource, settings: Settings | None = None) -> list[AnalyzedFace]:
    """Like detect_faces, with each face's embedding (``face.embedding.vector``, ``.model_id``)."""
    pipeline = get_pipeline(settings)
    return pipeline.analyze(_decode(pipeline, source), embed=True)


@dataclass(frozen=True)
class VerifyResult:
    similarity: float
    threshold: float
    target_fmr: float
    above_threshold: bool
    estimated_fmr: float
    meaning: str
    model_id: str
    face_a: AnalyzedFace
    face_b: AnalyzedFace
    faces_in_a: int
    faces_in_b: int
    sha256_a: str
    sha256_b: str

    def to_dict(self) -> dict[str, object]:
        return {
            "similarity": round(self.similarity, 5),
            "threshold": round(self.threshold, 5),
            "target_fmr": self.target_fmr,
            "above_threshold": self.above_threshold,
            "decision": "same_person_likely" if self.above_threshold else "not_established",
            "estimated_fmr": self.estimated_fmr,
            "meaning": self.meaning,
            "model_id": self.model_id,
            "image_a": {"sha256": self.sha256_a, "faces": self.faces_in_a, "face": self.face_a.to_dict()},
            "image_b": {"sha256": self.sha256_b, "faces": self.faces_in_b, "face": self.face_b.to_dict()},
        }


def verify(
    a: ImageSource,
    b: ImageSource,
    *,
    face_a: int | None = None,
    face_b: int | None = None,
    settings: Settings | None = None,
) -> VerifyResult:
    """1:1 comparison of one face in each image (the largest unless chosen)."""
    pipeline = get_pipeline(settings)
    img_a, img_b = _decode(pipeline, a), _decode(pipeline, b)
    fa, na = pipeline.analyze_one(img_a, face_a)
    fb, nb = pipeline.analyze_one(img_b, face_b)
    assert fa.embedding is not None and fb.embedding is not None
    similarity = float(np.dot(fa.embedding.vector, fb.embedding.vector))
    calibration = load_calibration(pipeline.model_id)
    target = pipeline.settings.verify.target_fmr
    threshold = calibration.threshold_for(target)
    return VerifyResult(
        similarity=similarity,
        threshold=threshold,
        target_fmr=target,
        above_threshold=similarity >= threshold,
        estimated_fmr=calibration.fmr_at(similarity),
        meaning=calibration.describe(similarity),
        model_id=pipeline.model_id,
        face_a=fa,
        face_b=fb,
        faces_in_a=na,
        faces_in_b=nb,
        sha256_a=img_a.sha256,
        sha256_b=img_b.sha256,
    )
