"""1:N searches (investigators), search history in the caller's scope, candidate faces and reviews.

Contract for a probe with several faces: POST /searches without face_index answers 409 with code
``face_choice_required`` and ``error.details.faces`` (index, box, quality, aligned thumbnail of each face,
largest first); the client asks again with ``face_index``. POST /detect gives the same list beforehand. A
chosen face that fails quality is refused with 422 ``probe_quality_failed`` and ``error.details.reasons``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from facetrail.cases import reviews, searches
from facetrail.cases.probe import SearchRequest
from facetrail.cases.searches import SearchView
from facetrail.context import AppContext
from facetrail.gallery.search import MAX_CANDIDATES, MIN_CANDIDATES
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.api._common import ERROR_RESPONSES, JPEG_RESPONSE, IdPath, read_upload
from facetrail.service.api.faces import DetectedFaceOut, face_out
from facetrail.service.deps import current_principal, get_ctx, require, require_any

router = APIRouter(prefix="/searches", tags=["searches"], responses=ERROR_RESPONSES)
can_view = require_any(*searches.VIEW_PERMISSIONS)
RankPath = Annotated[int, IdPath]


class SearchOptions(BaseModel):
    offenses: list[str]
    legal_bases: list[str]
    min_candidates: int
    max_candidates: int
    default_candidates: int
    similarity_floor: float
    notice: str


class ReviewOut(BaseModel):
    id: int
    search_id: int
    rank: int
    face_id: int
    reviewer: str
    decision: str
    notes: str
    created_at: dt.datetime


class CandidateFaceOut(BaseModel):
    face_id: int
    similarity: float = Field(description="This enrolled face against the probe")
    thumbnail_url: str


class CandidateOut(BaseModel):
    """A candidate is a SUBJECT (each enrolled person at most once per list), shown by its best-matching face."""

    rank: int
    similarity: float | None = Field(
        description="The subject's score over all of its enrolled faces (rule: score_rule); null for an "
        "investigator while the candidate is under review"
    )
    estimated_fmr: float | None = Field(
        description="Share of different people with as many enrolled faces scoring at least this high: a "
        "subject with k faces has k chances (null while under review, for investigators)"
    )
    subject_external_id: str
    subject_id: int
    face_id: int = Field(description="The subject's best-matching face: the one shown, and the key of its reviews")
    thumbnail_url: str
    reviews: list[ReviewOut]
    faces_enrolled: int | None = Field(None, description="The subject's enrolled faces (null while masked)")
    faces_above_floor: int | None = Field(
        None, description="How many of them scored at or above the similarity floor (null while masked)"
    )
    faces: list[CandidateFaceOut] = Field(
        default_factory=list,
        description="Expansion: the subject's faces, best first (at most 50; empty while masked)",
    )
    score_rule: str | None = Field(None, description="How the subject's score combines its faces' (e.g. max)")


class ProbeOut(BaseModel):
    sha256: str
    stored: bool
    face_index: int
    faces_detected: int
    declaration: str = Field("original", description="What the searcher declared the probe to be")


class SearchOut(BaseModel):
    kind: Literal["candidate_list"] = "candidate_list"
    notice: str = Field(description="Investigative leads only — never an identification")
    search_id: int
    created_at: dt.datetime
    actor: str
    unit: str | None
    gallery: str
    gallery_size: int | None = Field(description="Known in the response to the search itself only")
    model_id: str
    case_number: str
    offense: str
    legal_basis: str
    justification: str
    probe: ProbeOut
    probe_face: DetectedFaceOut | None = Field(
        description="The searched face (aligned), in the response to the search itself only"
    )
    candidates_requested: int
    candidates_shown: int = Field(description="Candidates at or above the similarity floor")
    similarity_floor: float
    candidates: list[CandidateOut] | None = Field(
        description="Null for callers who may see search metadata but not faces (auditors)"
    )
    reviews_count: int


class SearchPageOut(BaseModel):
    total: int
    items: list[SearchOut]


def search_out(v: SearchView) -> SearchOut:
    candidates = None
    if v.candidates is not None:
        candidates = []
        for c in v.candidates:
            url = f"/api/v1/searches/{v.search_id}/candidates/{c.rank}/thumbnail"
            candidates.append(
                CandidateOut(
                    rank=c.rank,
                    similarity=c.similarity,
                    estimated_fmr=c.estimated_fmr,
                    subject_external_id=c.subject_external_id,
                    subject_id=c.subject_id,
                    face_id=c.face_id,
                    thumbnail_url=url,
                    reviews=[ReviewOut(**r) for r in c.reviews],
                    faces_enrolled=c.faces_enrolled,
                    faces_above_floor=c.faces_above_floor,
                    faces=[
                        CandidateFaceOut(
                            face_id=f["face_id"],
                            similarity=f["similarity"],
                            thumbnail_url=f"{url}?face_id={f['face_id']}",
                        )
                        for f in c.faces
                    ],
                    score_rule=c.score_rule,
                )
            )
    return SearchOut(
        notice=v.notice,
        search_id=v.search_id,
        created_at=v.created_at,
        actor=v.actor,
        unit=v.unit,
        gallery=v.gallery,
        gallery_size=v.gallery_size,
        model_id=v.model_id,
        case_number=v.case_number,
        offense=v.offense,
        legal_basis=v.legal_basis,
        justification=v.justification,
        probe=ProbeOut(
            sha256=v.probe_sha256,
            stored=v.probe_stored,
            face_index=v.face_index,
            faces_detected=v.faces_in_probe,
            declaration=v.probe_declaration,
        ),
        probe_face=face_out(v.probe_face) if v.probe_face else None,
        candidates_requested=v.candidates_requested,
        candidates_shown=v.candidates_shown,
        similarity_floor=v.similarity_floor,
        candidates=candidates,
        reviews_count=v.reviews_count,
    )


@router.get("/options", response_model=SearchOptions, summary="Offenses, legal bases and limits a search may use")
def options(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)) -> SearchOptions:
    return SearchOptions(**searches.search_options(ctx))


@router.post(
    "",
    response_model=SearchOut,
    status_code=201,
    summary="Search a gallery with a probe photo: a candidate list of investigative leads (audited)",
)
def run_search(
    probe: Annotated[UploadFile, File(description="The probe photo; never added to a gallery")],
    gallery: Annotated[str, Form(min_length=1, max_length=200)],
    case_number: Annotated[str, Form(min_length=1, max_length=100)],
    offense: Annotated[str, Form(min_length=1, max_length=100, description="One of the configured offenses")],
    legal_basis: Annotated[str, Form(min_length=1, max_length=100, description="One of the configured legal bases")],
    justification: Annotated[str, Form(min_length=1, max_length=2000, description="Why this search is needed")],
    face_index: Annotated[
        int | None,
        Form(ge=0, le=999, description="Which face of the probe (0 = largest); required when it has several"),
    ] = None,
    # Bounds checked by the core rather than the schema, so that a refused count is audited like any refusal.
    candidates: Annotated[
        int,
        Form(
            description=f"Length of the candidate list, {MIN_CANDIDATES}-{MAX_CANDIDATES}; "
            "others are refused (400, audited)"
        ),
    ] = 20,
    probe_declaration: Annotated[
        str,
        Form(
            max_length=40,
            description="What the probe is: original | edited | composite_sketch (the policy may refuse the last two)",
        ),
    ] = "original",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.SEARCH_RUN)),
) -> SearchOut:
    data = read_upload(probe, "probe", ctx.settings.images.max_bytes)
    request = SearchRequest(
        gallery=gallery,
        case_number=case_number,
        offense=offense,
        legal_basis=legal_basis,
        justification=justification,
        candidates=candidates,
        face_index=face_index,
        probe_declaration=probe_declaration,
    )
    return search_out(searches.run_search(ctx, who, data, request))


@router.get("", response_model=SearchPageOut, summary="Search history in the caller's scope (metadata only)")
def list_searches(
    case_number: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(can_view),
) -> SearchPageOut:
    page = searches.list_searches(ctx, who, limit=limit, offset=offset, case_number=case_number)
    return SearchPageOut(total=page.total, items=[search_out(v) for v in page.items])


@router.get(
    "/{search_id}",
    response_model=SearchOut,
    summary="One search; candidates only for the searcher and their unit's reviewers (audited)",
)
def get_search(search_id: IdPath, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(can_view)) -> SearchOut:
    return search_out(searches.get_search(ctx, who, search_id))


@router.get(
    "/{search_id}/candidates/{rank}/thumbnail",
    response_class=Response,
    responses=JPEG_RESPONSE,
    summary="A candidate's best-matching enrolled face, or with face_id another of its faces (JPEG; audited)",
)
def candidate_thumbnail(
    search_id: IdPath,
    rank: RankPath,
    face_id: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="One of the candidate's faces (its expansion)")
    ] = None,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require_any(Permission.SEARCH_VIEW_OWN, Permission.SEARCH_VIEW_UNIT)),
) -> Response:
    return Response(searches.candidate_thumbnail(ctx, who, search_id, rank, face_id), media_type="image/jpeg")


@router.get("/{search_id}/reviews", response_model=list[ReviewOut], summary="Review decisions on a search")
def list_reviews(
    search_id: IdPath, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(can_view)
) -> list[ReviewOut]:
    return [ReviewOut(**r) for r in reviews.list_reviews(ctx, who, search_id)]


class AdjudicationIn(BaseModel):
    decision: Literal["possible_lead", "not_a_match"]
    reason: str = Field(min_length=1, max_length=reviews.MAX_NOTES, description="Why (required; recorded)")


class AdjudicationOut(BaseModel):
    search_id: int
    rank: int
    adjudicator: str
    decision: str
    reason: str
    created_at: dt.datetime


@router.put(
    "/{search_id}/candidates/{rank}/adjudication",
    response_model=AdjudicationOut,
    summary="Settle two reviewers' disagreement on a candidate (an adjudicator named by the policy; audited)",
)
def adjudicate_candidate(
    search_id: IdPath,
    rank: RankPath,
    body: AdjudicationIn,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.REVIEW_ADJUDICATE)),
) -> AdjudicationOut:
    return AdjudicationOut(**reviews.adjudicate_candidate(ctx, who, search_id, rank, body.decision, body.reason))


class CommitmentOut(BaseModel):
    search_id: int
    found: bool
    audit_seq: int | None = None
    committed: bool | None = Field(None, description="False: an older search whose audit record lists candidates")
    matches: bool | None = Field(None, description="The stored candidate list is the one the audit record commits to")


@router.get(
    "/{search_id}/commitment",
    response_model=CommitmentOut,
    summary="Check a search's candidate list against its audit record's salted commitment (auditors; names nobody)",
)
def check_commitment(
    search_id: IdPath,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.SEARCH_METADATA_ALL)),
) -> CommitmentOut:
    from facetrail.gallery.search import check_commitment as check

    return CommitmentOut(**check(ctx, search_id))
