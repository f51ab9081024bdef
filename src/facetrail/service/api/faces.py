"""Faces of uploaded photos: detect (faces and quality), verify (1:1), and enrolled faces' thumbnails."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from facetrail.cases.probe import ProbeFace, detect_upload, verify_uploads
from facetrail.context import AppContext
from facetrail.gallery import browse
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.api._common import ERROR_RESPONSES, JPEG_RESPONSE, IdPath, read_upload
from facetrail.service.deps import get_ctx, require

router = APIRouter(tags=["faces"], responses=ERROR_RESPONSES)

FaceChoice = Annotated[int | None, Form(ge=0, le=999, description="Face number (0 = largest; default 0).")]


class Box(BaseModel):
    x: float
    y: float
    width: float
    height: float


class Quality(BaseModel):
    verdict: str = Field(description="pass | warn | fail")
    reasons: list[str]
    measures: dict[str, float]
    expectations: list[str] = Field(
        default_factory=list,
        description="What LFW probes of this size and sharpness did (the shipped quality table; docs/accuracy.md)",
    )


class DetectedFaceOut(BaseModel):
    index: int = Field(description="0 = largest; what a search's face_index names")
    box: Box
    detection_score: float
    quality: Quality
    thumbnail_data_url: str = Field(description="The aligned face as a data: URL (JPEG)")


class DetectOut(BaseModel):
    sha256: str
    width: int
    height: int
    format: str
    faces: list[DetectedFaceOut]


class VerifyFace(BaseModel):
    sha256: str
    faces: int
    face_index: int
    box: Box
    quality: Quality


class VerifyOut(BaseModel):
    similarity: float
    threshold: float
    target_fmr: float
    decision: str = Field(description="same_person_likely | not_established — never an identification")
    estimated_fmr: float = Field(description="Share of different-person pairs scoring at least this high")
    meaning: str
    model_id: str
    image_a: VerifyFace
    image_b: VerifyFace


def face_out(face: ProbeFace) -> DetectedFaceOut:
    return DetectedFaceOut(**face.to_dict())


@router.post("/detect", response_model=DetectOut, summary="Faces and their quality in an uploaded photo")
def detect(
    image: Annotated[UploadFile, File(description="A photo (JPEG, PNG, WebP, ...)")],
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.DETECT_RUN)),
) -> DetectOut:
    analysis = detect_upload(ctx, who, read_upload(image, "image", ctx.settings.images.max_bytes))
    return DetectOut(
        sha256=analysis.sha256,
        width=analysis.width,
        height=analysis.height,
        format=analysis.format,
        faces=[face_out(f) for f in analysis.faces],
    )


@router.post("/verify", response_model=VerifyOut, summary="1:1 comparison of one face in each of two photos")
def verify(
    image_a: Annotated[UploadFile, File()],
    image_b: Annotated[UploadFile, File()],
    face_a: FaceChoice = None,
    face_b: FaceChoice = None,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.VERIFY_RUN)),
) -> VerifyOut:
    max_bytes = ctx.settings.images.max_bytes
    r = verify_uploads(
        ctx,
        who,
        read_upload(image_a, "image_a", max_bytes),
        read_upload(image_b, "image_b", max_bytes),
        face_a=face_a,
        face_b=face_b,
    )

    def side(sha: str, faces: int, face: Any) -> VerifyFace:
        d = face.to_dict()
        return VerifyFace(
            sha256=sha, faces=faces, face_index=face.index, box=Box(**d["box"]), quality=Quality(**d["quality"])
        )

    return VerifyOut(
        similarity=round(r.similarity, 5),
        threshold=round(r.threshold, 5),
        target_fmr=r.target_fmr,
        decision="same_person_likely" if r.above_threshold else "not_established",
        estimated_fmr=r.estimated_fmr,
        meaning=r.meaning,
        model_id=r.model_id,
        image_a=side(r.sha256_a, r.faces_in_a, r.face_a),
        image_b=side(r.sha256_b, r.faces_in_b, r.face_b),
    )


@router.get(
    "/faces/{face_id}/thumbnail",
    response_class=Response,
    responses=JPEG_RESPONSE,
    summary="An enrolled face's aligned crop (JPEG; audited)",
)
def face_thumbnail(
    face_id: IdPath, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(require(Permission.FACES_BROWSE))
) -> Response:
    return Response(browse.face_thumbnail(ctx, who, face_id), media_type="image/jpeg")
