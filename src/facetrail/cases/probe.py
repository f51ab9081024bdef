"""An uploaded photo's faces, for a client to check quality and pick one (detect), 1:1 verify of two uploads,
and what a search asks for (``SearchRequest``) and which probe face it searches (``choose_face``).

Everything that runs or approves a search starts here: cases.searches (running one), cases.requests (prior
approval and emergency searches) and the API, web and CLI doors.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from typing import Any

import cv2

from facetrail.api import VerifyResult, verify
from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.faces.pipeline import PIPELINE_LOCK, AnalyzedFace
from facetrail.faces.types import DecodedImage, Embedding
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission

THUMBNAIL_JPEG_QUALITY = 90


class FaceChoiceRequiredError(FaceTrailError):
    """The probe has several faces and none was chosen: the client shows ``details.faces`` and asks again."""

    code = "face_choice_required"
    http_status = 409


class ProbeQualityError(FaceTrailError):
    """The chosen face fails the quality checks; ``details.reasons`` says why."""

    code = "probe_quality_failed"
    http_status = 422


@dataclass(frozen=True)
class SearchRequest:
    """What a 1:N search asks for, whichever door it came through (API, web form, CLI, an approved request)."""

    gallery: str
    case_number: str
    offense: str
    legal_basis: str
    justification: str
    candidates: int = 20
    face_index: int | None = None
    # What the searcher declares the probe to be: original | edited | composite_sketch (the policy's
    # [probes].accepted decides which may be searched; governance.approvals.check_probe_declaration)
    probe_declaration: str = "original"


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


def choose_face(analysis: ProbeAnalysis, face_index: int | None) -> ProbeFace | None:
    """The face to search, or a refusal: several faces and no choice, or the chosen face fails quality.
    None when there is no usable face: the search core then gives the precise error (no_face / out of range)."""
    faces = analysis.faces
    if not faces or (face_index is not None and not 0 <= face_index < len(faces)):
        return None
    if face_index is None and len(faces) > 1:
        raise FaceChoiceRequiredError(
            f"the probe has {len(faces)} faces; choose one (face_index 0-{len(faces) - 1}) and search again",
            faces=[f.to_dict() for f in faces],
        )
    chosen = faces[face_index or 0]
    if not chosen.passes_quality:
        raise ProbeQualityError(
            "the probe face fails the quality checks: " + "; ".join(chosen.quality["reasons"]),
            face_index=chosen.index,
            reasons=list(chosen.quality["reasons"]),
            quality=chosen.quality,
        )
    return chosen
