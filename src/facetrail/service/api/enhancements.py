"""Enhancement of an examination's probe and candidate images without altering evidence (docs/examination.md).

Contract: POST creates one logged step (operation, parameters, purpose; the server applies it to a copy made
from the ORIGINAL and the logged chain); GET the examiner's log, an enhanced image (PNG) and a replay check (the
image made again from the original and the log, with both hashes). Only brightness, contrast, gamma, rotate,
crop, sharpen and denoise exist; nothing that adds content. Only the reviewer whose examination task it is may
use these (facetrail.cases.enhancements; every refusal audited there); the responses are the same for live
searches and known-answer tests and name no rank, score or subject. Auditors read a search's log (metadata).
The originals are never changed and cannot be deleted here.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response
from pydantic import BaseModel, Field

from facetrail.cases import enhancements
from facetrail.context import AppContext
from facetrail.examination.enhance import Operation
from facetrail.policy.principal import Principal
from facetrail.service.api._common import ERROR_RESPONSES, IdPath
from facetrail.service.deps import current_principal, get_ctx

router = APIRouter(tags=["enhancements"], responses=ERROR_RESPONSES)
TaskId = Annotated[str, Path(min_length=8, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
ShaPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the enhanced image (hex)")]
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}, "description": "PNG image"}}


class EnhancementIn(BaseModel):
    image: Literal["probe", "candidate"]
    candidate: str | None = Field(None, max_length=40, description="The candidate's handle (image = candidate)")
    handle: str | None = Field(None, max_length=40, description="Same as candidate (either may be given)")
    photo: int | None = Field(
        None, ge=0, le=999, description="Which of the candidate's photos (0, the default: its own)"
    )
    parent_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="Apply to this enhancement of the image (default: the original)"
    )
    operation: str = Field(max_length=40, description="One of: " + ", ".join(o.value for o in Operation))
    parameters: dict[str, Any] = Field(default_factory=dict)
    purpose: str = Field(max_length=enhancements.MAX_PURPOSE, description="Why this enhancement is needed (logged)")


class EnhancementOut(BaseModel):
    id: int
    image: str
    candidate: str | None
    photo: int
    original_sha256: str
    parent_sha256: str
    sha256: str
    pixels_sha256: str
    step: int
    operation: str
    parameters: dict[str, Any]
    steps: list[dict[str, Any]]
    purpose: str
    user: str | None
    created_at: dt.datetime
    width: int
    height: int
    enhanced: bool = Field(True, description="Always true: a derived image, never evidence in itself")
    image_stored: bool
    image_url: str | None


class ReplayOut(BaseModel):
    sha256: str
    replayed_sha256: str
    pixels_sha256: str
    replayed_pixels_sha256: str
    identical: bool
    pixels_identical: bool
    original_sha256: str
    logged_original_sha256: str
    steps: list[dict[str, Any]]


@router.post(
    "/examinations/{task_id}/enhancements",
    response_model=EnhancementOut,
    status_code=201,
    summary="Enhance a copy of the probe's or a candidate's image (the task's examiner; logged, audited)",
)
def create_enhancement(
    task_id: TaskId,
    body: EnhancementIn,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(current_principal),
) -> EnhancementOut:
    entry = enhancements.enhance_image(
        ctx,
        who,
        task_id,
        image=body.image,
        candidate=body.candidate or body.handle,
        photo=body.photo or 0,
        parent_sha256=body.parent_sha256,
        operation=body.operation,
        parameters=body.parameters,
        purpose=body.purpose,
    )
    return EnhancementOut(**entry)


@router.get(
    "/examinations/{task_id}/enhancements",
    response_model=list[EnhancementOut],
    summary="My enhancement log on this examination (audited)",
)
def list_enhancements(
    task_id: TaskId, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> list[EnhancementOut]:
    return [EnhancementOut(**e) for e in enhancements.enhancement_log(ctx, who, task_id)]


@router.get(
    "/examinations/{task_id}/enhancements/{sha256}/image",
    response_class=Response,
    responses=PNG_RESPONSE,
    summary="An enhanced image (PNG; the task's examiner; audited)",
)
def enhanced_image(
    task_id: TaskId,
    sha256: ShaPath,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(current_principal),
) -> Response:
    return Response(enhancements.enhanced_image(ctx, who, task_id, sha256), media_type="image/png")


@router.get(
    "/examinations/{task_id}/enhancements/{sha256}/replay",
    response_model=ReplayOut,
    summary="Make an enhancement again from the original and the log; compare the hashes (audited)",
)
def replay_enhancement(
    task_id: TaskId,
    sha256: ShaPath,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(current_principal),
) -> ReplayOut:
    return ReplayOut(**enhancements.replay(ctx, who, task_id, sha256))


@router.get(
    "/searches/{search_id}/enhancements",
    response_model=list[EnhancementOut],
    summary="A search's whole enhancement log (auditors: metadata, never images; audited)",
)
def search_enhancements(
    search_id: IdPath, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)
) -> list[EnhancementOut]:
    return [EnhancementOut(**e) for e in enhancements.audit_log(ctx, who, search_id)]
