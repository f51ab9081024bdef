"""Governance: the policy document (everyone signed in reads it; administrators apply), users' search training
(administrators), and search requests: prior-approval requests and emergency searches (investigators submit;
a reviewer of the same unit who is not the requester approves or denies). Every refusal is audited."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from pydantic import BaseModel, Field

from facetrail.cases import requests
from facetrail.cases.probe import SearchRequest
from facetrail.context import AppContext
from facetrail.governance import approvals, training
from facetrail.governance import policy as policy_doc
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.api._common import ERROR_RESPONSES, IdPath, read_upload
from facetrail.service.api.searches import SearchOut, search_out
from facetrail.service.deps import current_principal, get_ctx, require

router = APIRouter(tags=["governance"], responses=ERROR_RESPONSES)


class PolicyOut(BaseModel):
    version: int
    sha256: str
    created_by: str
    created_at: dt.datetime
    text: str
    policy: dict[str, Any]


class PolicyVersionOut(BaseModel):
    version: int
    sha256: str
    created_by: str
    created_at: dt.datetime


class PolicyIn(BaseModel):
    text: str = Field(min_length=1, max_length=policy_doc.MAX_POLICY_BYTES, description="The TOML document")


class TrainingIn(BaseModel):
    completed_on: dt.date
    course: str = Field(min_length=1, max_length=training.MAX_COURSE)


class TrainingOut(BaseModel):
    username: str
    completed_on: dt.date
    course: str
    recorded_by: str
    valid_until: dt.date
    valid: bool


class RequestOut(BaseModel):
    id: int
    kind: str
    status: str
    requester: str | None
    gallery: str
    case_number: str
    offense: str
    legal_basis: str
    justification: str
    candidates: int
    probe_sha256: str
    probe_held: bool
    policy_version: int | None
    search_id: int | None
    requested_at: dt.datetime
    deadline: dt.datetime | None
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_reason: str
    results_locked: bool


class SubmittedOut(BaseModel):
    request: RequestOut
    search: SearchOut | None = Field(description="Emergency searches run at once; requests wait for approval")


class DecisionIn(BaseModel):
    reason: str = Field("", max_length=approvals.MAX_REASON, description="Required to deny")


@router.get("/policy", response_model=PolicyOut, summary="The policy in force (everyone signed in)")
def show_policy(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(current_principal)) -> PolicyOut:
    return PolicyOut(**policy_doc.show_policy(ctx))


@router.get("/policy/history", response_model=list[PolicyVersionOut], summary="Every policy version")
def policy_history(
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(current_principal),
) -> list[PolicyVersionOut]:
    return [PolicyVersionOut(**v) for v in policy_doc.policy_history(ctx)]


@router.post("/policy/validate", response_model=dict[str, Any], summary="Check a policy document (nothing applied)")
def validate_policy(body: PolicyIn, who: Principal = Depends(current_principal)) -> dict[str, Any]:
    return policy_doc.parse_policy(body.text).model_dump()


@router.put("/policy", response_model=PolicyVersionOut, summary="Apply a new policy version (audited with the diff)")
def apply_policy(
    body: PolicyIn, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(require(Permission.POLICY_MANAGE))
) -> PolicyVersionOut:
    return PolicyVersionOut(
        **policy_doc.apply_policy(ctx, body.text, actor=who.actor, audit_context=who.audit_context())
    )


@router.post(
    "/users/{username}/training",
    response_model=TrainingOut,
    status_code=201,
    summary="Record a user's search training (audited)",
)
def record_training(
    username: str,
    body: TrainingIn,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.TRAINING_MANAGE)),
) -> TrainingOut:
    return TrainingOut(
        **training.record_training(
            ctx, username, body.completed_on, body.course, actor=who.actor, audit_context=who.audit_context()
        )
    )


@router.get(
    "/users/{username}/training",
    response_model=TrainingOut | None,
    summary="A user's newest search training (null: none)",
)
def get_training(
    username: str, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(require(Permission.TRAINING_MANAGE))
) -> TrainingOut | None:
    status = training.training_status(ctx, username)
    return TrainingOut(**status) if status else None


@router.post(
    "/search-requests",
    response_model=SubmittedOut,
    status_code=201,
    summary="Submit a search for prior approval, or run an emergency search (audited)",
)
def submit_request(
    probe: Annotated[UploadFile, File(description="The probe photo; held until the request is decided")],
    gallery: Annotated[str, Form(min_length=1, max_length=200)],
    case_number: Annotated[str, Form(min_length=1, max_length=100)],
    offense: Annotated[str, Form(min_length=1, max_length=100)],
    legal_basis: Annotated[str, Form(min_length=1, max_length=100)],
    justification: Annotated[str, Form(min_length=1, max_length=2000)],
    emergency: Annotated[bool, Form(description="Exigent circumstances: run now, approve after the fact")] = False,
    face_index: Annotated[int | None, Form(ge=0, le=999)] = None,
    candidates: Annotated[int, Form()] = 20,
    probe_declaration: Annotated[
        str,
        Form(
            max_length=40,
            description="What the probe is: original | edited | composite_sketch (the policy may refuse the last two)",
        ),
    ] = "original",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.SEARCH_RUN)),
) -> SubmittedOut:
    data = read_upload(probe, "probe", ctx.settings.images.max_bytes)
    req = SearchRequest(
        gallery=gallery,
        case_number=case_number,
        offense=offense,
        legal_basis=legal_basis,
        justification=justification,
        candidates=candidates,
        face_index=face_index,
        probe_declaration=probe_declaration,
    )
    done = requests.submit(ctx, who, data, req, emergency=emergency)
    return SubmittedOut(request=RequestOut(**done.request), search=search_out(done.search) if done.search else None)


@router.get(
    "/search-requests",
    response_model=list[RequestOut],
    summary="Search requests: one's own (investigators), the unit's (reviewers), all (auditors)",
)
def list_requests(
    status: Annotated[str | None, Query(max_length=20)] = None,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(current_principal),
) -> list[RequestOut]:
    return [RequestOut(**r) for r in approvals.list_requests(ctx, who, status=status)]


@router.post(
    "/search-requests/{request_id}/approve",
    response_model=RequestOut,
    summary="Approve a colleague's request (it runs) or emergency search (reviewers of the unit; audited)",
)
def approve(
    request_id: IdPath,
    body: DecisionIn | None = None,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.SEARCH_APPROVE)),
) -> RequestOut:
    return RequestOut(**requests.approve(ctx, who, request_id, body.reason if body else ""))


@router.post(
    "/search-requests/{request_id}/deny",
    response_model=RequestOut,
    summary="Deny a colleague's request or emergency search, with a reason (audited)",
)
def deny(
    request_id: IdPath,
    body: DecisionIn | None = None,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.SEARCH_APPROVE)),
) -> RequestOut:
    return RequestOut(**requests.deny(ctx, who, request_id, body.reason if body else ""))
