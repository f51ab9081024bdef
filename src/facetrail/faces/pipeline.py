"""The pipeline object: one detector and one embedder, loaded once per process, used by CLI, service and eval."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from facetrail.config import Settings, get_settings
from facetrail.errors import FaceIndexError, NoFaceError
from facetrail.faces.decode import decode_image, read_image_bytes
from facetrail.faces.detect import FaceDetector, detect_faces, make_detector
from facetrail.faces.embed import make_embedder
from facetrail.faces.quality import assess_quality
from facetrail.faces.quality_expectations import QualityExpectations, load_expectations
from facetrail.faces.types import (
    CropEmbedder,
    DecodedImage,
    DetectedFace,
    Embedding,
    FaceEmbedder,
    QualityReport,
)

# The pipeline is thread-safe (a detector per thread, shared ONNX sessions on one intra-op thread each), so
# analyses may run at once; at most one per core, so that concurrent requests queue instead of thrashing.
# Every server-side caller (search, detect, verify, enrollment from uploads, packets) holds it while it runs.
PIPELINE_LOCK = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


@dataclass(frozen=True)
class AnalyzedFace:
    index: int  # position in the image's face list (largest first)
    face: DetectedFace
    quality: QualityReport
    aligned: np.ndarray  # the aligned crop the embedder sees (BGR)
    embedding: Embedding | None

    def to_dict(self) -> dict[str, object]:
        x, y, w, h = self.face.box
        names = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")
        return {
            "index": self.index,
            "box": {"x": round(x, 1), "y": round(y, 1), "width": round(w, 1), "height": round(h, 1)},
            "landmarks": {
                n: [round(float(p[0]), 1), round(float(p[1]), 1)]
                for n, p in zip(names, self.face.landmarks, strict=True)
            },
            "detection_score": round(self.face.score, 4),
            "quality": self.quality.to_dict(),
        }


class FacePipeline:
    """decode → detect → align → quality → embed."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        # One detector per thread (OpenCV's FaceDetectorYN, the reference YuNet, keeps per-call state), so a
        # server's worker threads can analyse photos at once. The embedder is shared (it keeps its own per-thread
        # state where its runtime needs it).
        self._local = threading.local()
        self._embedder: FaceEmbedder | None = None

    @property
    def detector(self) -> FaceDetector:
        detector: FaceDetector | None = getattr(self._local, "detector", None)
        if detector is None:
            compute = self.settings.compute
            detector = make_detector(
                self.settings.detection, self.settings.embedding.onnx_threads, compute.device, compute.cuda_device_id
            )
            self._local.detector = detector
        return detector

    @property
    def embedder(self) -> FaceEmbedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.settings.embedding, self.settings.compute)
        return self._embedder

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def expectations(self) -> QualityExpectations | None:
        """The quality expectation table shipped for this model (None if none ships for these weights)."""
        return load_expectations(self.model_id)

    def decode(self, data: bytes) -> DecodedImage:
        return decode_image(data, self.settings.images)

    def decode_path(self, path: str | Path) -> DecodedImage:
        return decode_image(read_image_bytes(path, self.settings.images), self.settings.images)

    def detect(self, image: DecodedImage) -> list[DetectedFace]:
        return detect_faces(image.pixels, self.detector, self.settings.detection)

    def analyze(self, image: DecodedImage, *, embed: bool = True) -> list[AnalyzedFace]:
        return self.analyze_many([image], embed=embed)[0]

    def analyze_many(self, images: Sequence[DecodedImage], *, embed: bool = True) -> list[list[AnalyzedFace]]:
        """``analyze`` for several images: each is detected alone, then the faces of all of them are embedded
        together, ``embedding.batch_faces`` faces per forward pass (with flip averaging a face and its mirror
        share the pass). Same vectors as one image at a time (cosine > 0.9999, tests/test_pipeline_batch.py)."""
        detected = [self.detect(image) for image in images]
        crops = [
            [self.embedder.aligned_crop(im.pixels, f) for f in faces]
            for im, faces in zip(images, detected, strict=True)
        ]
        vectors: list[np.ndarray | None] = [None] * len(images)
        if embed:
            vectors = self._embed_images(images, detected, crops)
        out = []
        for faces, image_crops, image_vectors in zip(detected, crops, vectors, strict=True):
            analyzed = []
            for i, (face, crop) in enumerate(zip(faces, image_crops, strict=True)):
                emb = Embedding(vector=image_vectors[i], model_id=self.model_id) if image_vectors is not None else None
                analyzed.append(
                    AnalyzedFace(
                        i, face, assess_quality(face, crop, self.settings.quality, self.expectations), crop, emb
                    )
                )
            out.append(analyzed)
        return out

    def embed_faces(self, image: DecodedImage, faces: Sequence[DetectedFace]) -> np.ndarray:
        """Vectors of these faces of one image (rows L2-normalised)."""
        crops = [self.embedder.aligned_crop(image.pixels, f) for f in faces]
        vectors = self._embed_images([image], [list(faces)], [crops])[0]
        return vectors if vectors is not None else np.zeros((0, self.embedder.dim), np.float32)

    def _embed_images(
        self,
        images: Sequence[DecodedImage],
        detected: Sequence[Sequence[DetectedFace]],
        crops: Sequence[Sequence[np.ndarray]],
    ) -> list[np.ndarray | None]:
        embedder = self.embedder
        if not isinstance(embedder, CropEmbedder):  # dlib and fusion make their own chips from the image
            return [
                embedder.embed(im.pixels, faces) if faces else None for im, faces in zip(images, detected, strict=True)
            ]
        flat = [crop for image_crops in crops for crop in image_crops]
        step = max(1, self.settings.embedding.batch_faces)
        parts = [embedder.embed_crops(flat[i : i + step]) for i in range(0, len(flat), step)]
        every = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)
        out: list[np.ndarray | None] = []
        start = 0
        for image_crops in crops:
            out.append(every[start : start + len(image_crops)] if image_crops else None)
            start += len(image_crops)
        return out

    def analyze_one(self, image: DecodedImage, face_index: int | None = None) -> tuple[AnalyzedFace, int]:
        """The chosen face (largest by default) with its embedding, and how many faces the image has."""
        faces = self.detect(image)
        if not faces:
            raise NoFaceError("no face was found in the image")
        index = 0 if face_index is None else face_index
        if not 0 <= index < len(faces):
            raise FaceIndexError(
                f"face {index} was asked for, but the image has {len(faces)} face(s) (numbered 0-{len(faces) - 1})",
                faces=len(faces),
            )
        face = faces[index]
        crop = self.embedder.aligned_crop(image.pixels, face)
        vector = self._embed_images([image], [[face]], [[crop]])[0]
        assert vector is not None
        quality = assess_quality(face, crop, self.settings.quality, self.expectations)
        return AnalyzedFace(index, face, quality, crop, Embedding(vector[0], self.model_id)), len(faces)


@lru_cache(maxsize=4)
def _cached_pipeline(settings_key: str) -> FacePipeline:
    return FacePipeline(Settings.model_validate_json(settings_key))


def get_pipeline(settings: Settings | None = None) -> FacePipeline:
    """One pipeline per process and settings (models load once)."""
    s = settings or get_settings()
    return _cached_pipeline(s.model_dump_json())
