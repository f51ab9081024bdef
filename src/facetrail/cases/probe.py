"""An uploaded photo's faces, for a client to check quality and pick one (detect), and 1:1 verify of two uploads."""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import cv2

from facetrail.accounts.service import Principal
from facetrail.api import VerifyResult, verify
from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.faces.pipeline import AnalyzedFace
from facetrail.faces.types import DecodedImage, Embedding
from facetrail.policy.roles import Permission

# The pipeline is thread-safe (a detector per thread, shared ONNX sessions on one intra-op thread each), so
# analyses may run at once; at most one per core, so that concurrent requests queue instead of thrashing.
PIPELINE_LOCK = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
THUMBNAIL_JPEG_QUALITY = 90


@dataclass(frozen=True)
class ProbeFace:
    index: int  # 0 = largest; what a search's face_index names
    box: dict[str, float]
    detection_score: float
    quality: dict[str, Any]  # verdict, reasons, measures
    aligned_jpeg: bytes  # the aligned crop the embedder sees

    @property
    def passes_quality(self) -> bool:
        return self.quality["verdict"] != "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "box": self.box,
            "detection_score": self.detection_score,
            "quality": self.quality,
            "thumbnail_data_url": data_url(self.aligned_jpeg),
        }


@dataclass(frozen=True)
class ProbeAnalysis:
    sha256: str
    width: int
    height: int
    format: str
    faces: list[ProbeFace]
    image: DecodedImage = field(repr=False)
    analyzed: list[AnalyzedFace] = field(repr=False)  # same order as faces; no embeddings

    def embedded(self, ctx: AppContext, index: int) -> AnalyzedFace:
        """Face ``index`` with its embedding: what a search compares (the probe is not detected again)."""
        face = self.analyzed[index]
        with PIPELINE_LOCK:
            vector = ctx.pipeline.embedder.embed(self.image.pixels, [face.face])[0]
        return replace(face, embedding=Embedding(vector, ctx.pipeline.model_id))


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def encode_jpeg(crop: Any) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_JPEG_QUALITY])
    return jpeg.tobytes() if ok else b""


def probe_face(face: AnalyzedFace) -> ProbeFace:
    d = face.to_dict()
    return ProbeFace(
        index=face.index,
        box=d["box"],  # type: ignore[arg-type]
        detection_score=d["detection_score"],  # type: ignore[arg-type]
        quality=face.quality.to_dict(),
        aligned_jpeg=encode_jpeg(face.aligned),
    )


def analyze_upload(ctx: AppContext, data: bytes) -> ProbeAnalysis:
    """Decode (with the configured limits) and list every face, largest first, with its quality. No embedding."""
    pipeline = ctx.pipeline  # the instance the search core uses: one set of models per process
    with PIPELINE_LOCK:
        image = pipeline.decode(data)
        faces = pipeline.analyze(image, embed=False)
    return ProbeAnalysis(
        image.sha256, image.width, image.height, image.format, [probe_face(f) for f in faces], image, faces
    )


def detect_upload(ctx: AppContext, who: Principal, data: bytes) -> ProbeAnalysis:
    """Faces and quality of an uploaded photo. Audited ('detect': the image hash and face count)."""
    who.require(Permission.DETECT_RUN)
    analysis = analyze_upload(ctx, data)
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action="detect",
            target=f"image:{analysis.sha256}",
            details={"faces": len(analysis.faces), **who.audit_context()},
        )
    return analysis


def verify_uploads(
    ctx: AppContext, who: Principal, a: bytes, b: bytes, *, face_a: int | None = None, face_b: int | None = None
) -> VerifyResult:
    """1:1: one face of each photo (largest unless chosen). Audited ('verify.upload') with both hashes."""
    who.require(Permission.VERIFY_RUN)
    with PIPELINE_LOCK:
        result = verify(a, b, face_a=face_a, face_b=face_b, settings=ctx.settings)
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor=who.actor,
            action="verify.upload",
            target=f"image:{result.sha256_a}",
            details={
                "image_a": result.sha256_a,
                "image_b": result.sha256_b,
                "face_a": result.face_a.index,
                "face_b": result.face_b.index,
                "similarity": round(result.similarity, 5),
                "model_id": result.model_id,
                **who.audit_context(),
            },
        )
    return result
