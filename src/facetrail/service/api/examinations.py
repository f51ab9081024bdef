"""The examination method over HTTP (docs/examination.md): a reviewer's queue, the probe analysis (locks), the
masked candidates, the FISWG checklist, the conclusion (whose answer reveals what was withheld), and the
known-answer proficiency records. Thin over facetrail.cases.examinations.

Contract: tasks are named by opaque ids (never a search id); before a reviewer's conclusion on a candidate no
response of these routes carries its score, rank, estimated FMR, identity, the case story or the other
examiner's conclusion; a live task and a known-answer test have the same shapes until the task is complete.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from facetrail.cases import examinations
from facetrail.context import AppContext
from facetrail.examination import fiswg
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.api._common import ERROR_RESPONSES, JPEG_RESPONSE
from facetrail.service.deps import current_principal, get_ctx, require, require_any

router = APIRouter(prefix="/examinations", tags=["examinations"], responses=ERROR_RESPONSES)
examiner = require(Permission.REVIEW_DECIDE)
TaskId = Annotated[str, Path(min_length=8, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
Handle = Annotated[str, Path(min_length=4, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
IMAGE_HEADERS = {"cache-control": "private, no-store"}


class ProbeAnalysisOut(BaseModel):
    quality: dict[str, Any]
    suitable: bool
    notes: str
    recorded_at: dt.datetime
    locked: bool


class CaseOut(BaseModel):
    known_answer_test: bool
    case_number: str | None
    offense: str | None
    justification: str | None


class TaskOut(BaseModel):
    task_id: str
    status: str = Field(description="probe_analysis, comparison or complete")
    probe_image_url: str
    probe_analysis: ProbeAnalysisOut | None
    candidates_total: int | None = Field(description="Null until the probe analysis is recorded")
    candidates_concluded: int
    case: CaseOut | None = Field(description="Only once the whole task is complete (sequential unmasking)")
    probe_declaration: str | None = Field(
        None,
        description="What the searcher declared the probe to be (original, edited, composite_sketch); "
        "null until the probe analysis is recorded",
    )


class OtherConclusionOut(BaseModel):
    status: str = Field(
        description="pending or concluded (the other examiner is never named); none for a known-answer test"
    )
    conclusion: str | None


class RevealOut(BaseModel):
    rank: int
    similarity: float | None
    estimated_fmr: float | None
    subject_external_id: str | None
    other_conclusion: OtherConclusionOut | None = Field(
        None,
        description="Absent until this reviewer's whole task is complete (so that it tells nothing about the task)",
    )
    known_answer: str | None = Field(description="mated / non_mated once a known-answer task is complete")


class PhotoOut(BaseModel):
    index: int
    capture_date: str | None


class ChecklistOut(BaseModel):
    marks: dict[str, Any]
    annotations: list[dict[str, Any]]
    measurements: list[dict[str, Any]]
    saved_at: dt.datetime | None
    unmarked: list[str]


class CandidateOut(BaseModel):
    handle: str
    position: int
    image_url: str
    photos: list[PhotoOut] | None
    seen_order: int | None
    conclusion: str | None
    concluded_at: dt.datetime | None
    reveal: RevealOut | None = Field(description="Null until this reviewer's conclusion is recorded")


class CandidateDetailOut(CandidateOut):
    checklist: ChecklistOut
    reasoning: str
    limitations: str


class ProbeAnalysisIn(BaseModel):
    quality: dict[str, Any] = Field(description="Every quality factor: {rating: good|limited|poor, comment}")
    suitable: bool
    notes: str = Field("", max_length=examinations.MAX_TEXT)


class ChecklistIn(BaseModel):
    marks: dict[str, Any] = Field(description="{component: {characteristic: {mark, comment}}}")
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    measurements: list[dict[str, Any]] = Field(default_factory=list)


class ConclusionIn(BaseModel):
    conclusion: str = Field(description="A value of the conclusion scale (GET /examinations/method)")
    reasoning: str = Field(max_length=examinations.MAX_TEXT)
    limitations: str = Field(max_length=examinations.MAX_TEXT)


class MethodOut(BaseModel):
    quality_factors: dict[str, str]
    quality_ratings: list[str]
    checklist: list[dict[str, Any]]
    marks: list[str]
    scale: list[dict[str, Any]]


class ProficiencyOut(BaseModel):
    reviewer: str
    comparisons: int
    errors: int = Field(description="Support for the wrong proposition (neutral and not suitable are not errors)")
    mated: dict[str, int] = Field(description="Conclusions on mated pairs, by level")
    non_mated: dict[str, int] = Field(description="Conclusions on non-mated pairs, by level")


@router.get("/method", response_model=MethodOut, summary="The probe quality factors, FISWG checklist and scale")
def method(who: Principal = Depends(current_principal)) -> MethodOut:
    return MethodOut(
        quality_factors=fiswg.QUALITY_FACTORS,
        quality_ratings=list(fiswg.QUALITY_RATINGS),
        checklist=fiswg.definition(),
        marks=[m.value for m in fiswg.Mark],
        scale=examinations.scale_definition(),
    )


@router.get("", response_model=list[TaskOut], summary="My examination tasks (assigned by the system)")
def queue(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(examiner)) -> list[TaskOut]:
    return [TaskOut(**t) for t in examinations.queue(ctx, who)]


@router.get(
    "/proficiency",
    response_model=list[ProficiencyOut],
    summary="Known-answer test records by conclusion level: one's own, or every reviewer's (supervisors)",
)
def proficiency(
    reviewer: str | None = Query(None, max_length=100),
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require_any(Permission.REVIEW_DECIDE, Permission.PROFICIENCY_VIEW_ALL)),
) -> list[ProficiencyOut]:
    return [ProficiencyOut(**r) for r in examinations.proficiency(ctx, who, reviewer)]


@router.get("/{task_id}", response_model=TaskOut, summary="One of my examination tasks (audited)")
def get_task(task_id: TaskId, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(examiner)) -> TaskOut:
    return TaskOut(**examinations.get_task(ctx, who, task_id))


@router.get(
    "/{task_id}/probe/image",
    response_class=Response,
    responses=JPEG_RESPONSE,
    summary="The probe at full available resolution (audited)",
)
def probe_image(task_id: TaskId, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(examiner)) -> Response:
    data = examinations.probe_image(ctx, who, task_id)
    return Response(data, media_type=_media_type(data), headers=IMAGE_HEADERS)


@router.post(
    "/{task_id}/probe-analysis",
    response_model=TaskOut,
    summary="Record the analysis of the probe alone, once (it locks; 'not suitable' ends the task)",
)
def probe_analysis(
    task_id: TaskId, body: ProbeAnalysisIn, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(examiner)
) -> TaskOut:
    return TaskOut(**examinations.record_probe_analysis(ctx, who, task_id, body.quality, body.suitable, body.notes))


@router.get(
    "/{task_id}/candidates",
    response_model=list[CandidateOut],
    response_model_exclude_unset=True,  # a reveal has no other_conclusion key until the task is complete
    summary="The candidates, masked (shuffled, opaque handles) until each is concluded",
)
def candidates(
    task_id: TaskId, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(examiner)
) -> list[CandidateOut]:
    return [CandidateOut(**c) for c in examinations.list_candidates(ctx, who, task_id)]


@router.get(
    "/{task_id}/candidates/{handle}",
    response_model=CandidateDetailOut,
    response_model_exclude_unset=True,  # a reveal has no other_conclusion key until the task is complete
    summary="One candidate with its photos and my checklist (the first opening is recorded in the order seen)",
)
def candidate(
    task_id: TaskId, handle: Handle, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(examiner)
) -> CandidateDetailOut:
    return CandidateDetailOut(**examinations.open_candidate(ctx, who, task_id, handle))


@router.get(
    "/{task_id}/candidates/{handle}/photos/{index}",
    response_class=Response,
    responses=JPEG_RESPONSE,
    summary="One of the candidate's enrolled photos at full available resolution (audited)",
)
def candidate_photo(
    task_id: TaskId,
    handle: Handle,
    index: Annotated[int, Path(ge=0, le=999)],
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(examiner),
) -> Response:
    data = examinations.candidate_photo(ctx, who, task_id, handle, index)
    return Response(data, media_type=_media_type(data), headers=IMAGE_HEADERS)


@router.put(
    "/{task_id}/candidates/{handle}/checklist",
    response_model=CandidateDetailOut,
    response_model_exclude_unset=True,  # a reveal has no other_conclusion key until the task is complete
    summary="Save my FISWG checklist of one candidate (until my conclusion on it)",
)
def checklist(
    task_id: TaskId,
    handle: Handle,
    body: ChecklistIn,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(examiner),
) -> CandidateDetailOut:
    return CandidateDetailOut(
        **examinations.save_checklist(ctx, who, task_id, handle, body.marks, body.annotations, body.measurements)
    )


@router.post(
    "/{task_id}/candidates/{handle}/conclusion",
    response_model=CandidateDetailOut,
    response_model_exclude_unset=True,  # a reveal has no other_conclusion key until the task is complete
    summary="Record my conclusion on one candidate, once (the answer reveals score, rank, FMR, other conclusion)",
)
def conclusion(
    task_id: TaskId,
    handle: Handle,
    body: ConclusionIn,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(examiner),
) -> CandidateDetailOut:
    return CandidateDetailOut(
        **examinations.record_conclusion(ctx, who, task_id, handle, body.conclusion, body.reasoning, body.limitations)
    )


def _media_type(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"
