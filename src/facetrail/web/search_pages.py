"""Searching (investigators), results and history (in the caller's scope), and review (reviewers).

A web search has two steps: upload the probe with the case's fields → see the detected faces with their
quality and pick one → the search runs. Where the policy asks for prior approval the second step submits a
request instead (facetrail.governance.approvals), and an emergency search runs at once, to be approved after
the fact. Everything else is the cases and governance core: facetrail.cases, facetrail.governance.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile

from facetrail.cases import requests
from facetrail.cases.probe import FaceChoiceRequiredError, ProbeQualityError, SearchRequest, data_url, detect_upload
from facetrail.cases.searches import (
    candidate_thumbnail,
    get_search,
    list_searches,
    may_see_results,
    run_search,
    search_options,
)
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.examination import unmasking
from facetrail.examination.scale import DEFAULT_RELEASE_LEVEL, LABELS
from facetrail.gallery.browse import list_galleries
from facetrail.governance import approvals, release, training
from facetrail.governance.policy import active_policy
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.deps import get_ctx
from facetrail.storage.models import SearchRecord
from facetrail.web.common import csrf_ok, form_data, render, see_other, web_principal, web_require
from facetrail.web.probes import (
    PendingProbe,
    annotated_preview,
    hold_probe,
    peek_probe,
    remember_searched_face,
    searched_face,
    take_probe,
)
from facetrail.web.quality_note import attach_quality_note, read_quality_note

router = APIRouter(include_in_schema=False)
FIELDS = (
    "gallery",
    "case_number",
    "offense",
    "legal_basis",
    "justification",
    "candidates",
    "emergency",
    "probe_declaration",
)
DECISION_LABELS = {c.value: label for c, label in LABELS.items()}
PAGE = 50


def _form_page(
    request: Request,
    ctx: AppContext,
    who: Principal,
    fields: dict[str, str],
    status: int = 200,
    error: str | None = None,
    reasons: list[str] | None = None,
) -> Response:
    options = search_options(ctx)
    leads_notice = options.pop("notice")  # "notice" is the page's status message in base.html
    try:
        training.require_training(ctx, who)
        training_problem = None
    except training.TrainingRequiredError as exc:
        training_problem = exc.message
    return render(
        request,
        "search_new.html",
        status=status,
        title="New search",
        fields=fields,
        error=error,
        reasons=reasons or [],
        galleries=[g.name for g in list_galleries(ctx, who)],
        leads_notice=leads_notice,
        approval=active_policy(ctx).approval,
        training_problem=training_problem,
        **options,
    )


def _fields(form: Any) -> dict[str, str]:
    fields = {name: str(form.get(name) or "").strip() for name in FIELDS}
    fields["emergency"] = "on" if fields["emergency"] else ""
    return fields


def _mode(ctx: AppContext, fields: dict[str, str]) -> str:
    """'emergency', 'request' (the policy asks for prior approval) or 'search'."""
    if fields.get("emergency"):
        return "emergency"
    return "request" if active_policy(ctx).needs_prior_approval(fields["offense"], fields["gallery"]) else "search"


@router.get("/search/new")
def search_new(
    request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = web_require(Permission.SEARCH_RUN)
) -> Response:
    return _form_page(request, ctx, who, {"candidates": "20"})


@router.post("/search/new")
def search_upload(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.SEARCH_RUN),
    form: FormData = Depends(form_data),
) -> Response:
    """Step 1: the probe and the case's fields → the probe's faces, to pick one."""
    csrf_ok(request, form)
    fields = _fields(form)
    upload = form.get("probe")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _form_page(request, ctx, who, fields, 422, "Choose a probe photo.")
    missing = [
        label
        for name, label in (
            ("gallery", "gallery"),
            ("case_number", "case number"),
            ("offense", "offense"),
            ("legal_basis", "legal basis"),
            ("justification", "justification"),
        )
        if not fields[name]
    ]
    if missing:
        return _form_page(request, ctx, who, fields, 422, "Required: " + ", ".join(missing) + ".")
    data = upload.file.read()
    try:
        analysis = detect_upload(ctx, who, data)
    except FaceTrailError as exc:
        return _form_page(request, ctx, who, fields, 422, f"The probe could not be used: {exc.message}")
    if not analysis.faces:
        return _form_page(request, ctx, who, fields, 422, "No face was found in the probe photo. Nothing was searched.")
    token = hold_probe(ctx, PendingProbe(who.user_id, data, analysis, fields))
    return _pick_page(request, ctx, token, data, analysis, fields)


def _pick_page(
    request: Request,
    ctx: AppContext,
    token: str,
    data: bytes,
    analysis: Any,
    fields: dict[str, str],
    status: int = 200,
    error: str | None = None,
) -> Response:
    usable = [f for f in analysis.faces if f.passes_quality]
    return render(
        request,
        "search_pick.html",
        status=status,
        title="Choose the face",
        token=token,
        fields=fields,
        mode=_mode(ctx, fields),
        approval=active_policy(ctx).approval,
        preview=data_url(annotated_preview(ctx, data, analysis)),
        faces=analysis.faces,
        crops={f.index: data_url(f.aligned_jpeg) for f in analysis.faces},
        usable=usable,
        error=error,
        chosen=usable[0].index if len(usable) == 1 else None,
    )


@router.post("/search/run")
def search_run(
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = web_require(Permission.SEARCH_RUN),
    form: FormData = Depends(form_data),
) -> Response:
    """Step 2: search the chosen face."""
    csrf_ok(request, form)
    token = str(form.get("probe_token") or "")
    pending = peek_probe(ctx, token, who.user_id)
    if pending is None:
        return _form_page(
            request,
            ctx,
            who,
            {"candidates": "20"},
            410,
            "The uploaded probe has expired (or was already searched). Upload it again.",
        )
    choice = str(form.get("face_index") or "")
    if not choice.isdigit():
        return _pick_page(
            request, ctx, token, pending.data, pending.analysis, pending.fields, 422, "Choose one of the faces."
        )
    f = pending.fields
    try:
        candidates = int(f["candidates"] or 20)
    except ValueError:
        candidates = 0  # the core refuses it with the allowed range
    req = SearchRequest(
        gallery=f["gallery"],
        case_number=f["case_number"],
        offense=f["offense"],
        legal_basis=f["legal_basis"],
        justification=f["justification"],
        candidates=candidates,
        face_index=int(choice),
        probe_declaration=f.get("probe_declaration") or "original",
    )
    mode = _mode(ctx, f)
    try:
        if mode == "search":
            view = run_search(ctx, who, pending.data, req)
        else:
            submitted = requests.submit(ctx, who, pending.data, req, emergency=mode == "emergency")
            if submitted.search is None:  # a request: it waits for a reviewer
                take_probe(ctx, token, who.user_id)
                return see_other(f"/requests?done=submitted#request-{submitted.request['id']}")
            view = submitted.search
    except ProbeQualityError as exc:
        take_probe(ctx, token, who.user_id)
        listed = exc.details.get("reasons")
        reasons = [str(r) for r in listed] if isinstance(listed, list) else [exc.message]
        return _form_page(
            request,
            ctx,
            who,
            f,
            422,
            "Refused: the chosen face fails the quality checks, so it was not searched. Use a clearer photo.",
            reasons,
        )
    except FaceChoiceRequiredError as exc:
        return _pick_page(request, ctx, token, pending.data, pending.analysis, f, 409, exc.message)
    except FaceTrailError as exc:
        take_probe(ctx, token, who.user_id)
        return _form_page(request, ctx, who, f, 422, f"Refused: {exc.message}")
    take_probe(ctx, token, who.user_id)
    if view.probe_face is not None:
        jpeg = attach_quality_note(view.probe_face.aligned_jpeg, view.probe_face.quality)
        remember_searched_face(ctx, view.search_id, jpeg)
    return see_other(f"/searches/{view.search_id}")


@router.get("/searches")
def searches(
    request: Request,
    page: int = 1,
    case: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(web_principal),
) -> Response:
    page = max(1, page)
    listing = list_searches(ctx, who, limit=PAGE, offset=(page - 1) * PAGE, case_number=case.strip() or None)
    return render(
        request,
        "searches.html",
        title="Searches",
        listing=listing,
        page=page,
        case=case,
        pages=max(1, -(-listing.total // PAGE)),
        faces_visible=may_see_results(who),
    )


@router.get("/searches/{search_id}")
def search_result(
    search_id: int,
    request: Request,
    done: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(web_principal),
) -> Response:
    try:
        view = get_search(ctx, who, search_id)
    except approvals.ResultsLockedError as exc:  # refused and audited by the core; say so plainly
        return render(
            request,
            "search_locked.html",
            status=403,
            title=f"Search {search_id} locked",
            search_id=search_id,
            message=exc.message,
        )
    probe_jpeg = None
    if view.candidates is not None and view.probe_sha256 != unmasking.WITHHELD:  # an examiner's: not linkable
        probe_jpeg = searched_face(ctx, search_id, view.probe_sha256, view.probe_stored, view.face_index)
    own = view.user_id is not None and view.user_id == who.user_id
    approval = approvals.approval_for_search(ctx, search_id)
    return render(
        request,
        "search_result.html",
        title=f"Search {search_id}",
        s=view,
        probe=data_url(probe_jpeg) if probe_jpeg else None,
        probe_expectations=read_quality_note(probe_jpeg),
        may_review=who.can(Permission.REVIEW_DECIDE) and not own,
        decisions=DECISION_LABELS,
        mine={c.rank: _my_review(c.reviews, who) for c in view.candidates or []},
        states=_release_states(ctx, who, view),
        under_review=release.UNDER_REVIEW,
        approval=approvals.request_dict(ctx, approval) if approval else None,
        notice="Review saved." if done == "review" else None,
    )


def _release_states(ctx: AppContext, who: Principal, view: Any) -> dict[int, str]:
    """Per rank, what the caller may know of the two-person review. Investigators: 'under_review' or
    'released_lead' (the core masks what is not released). Reviewers: 'blind' until they have decided (the other
    reviewer's decision, and so the outcome, stays hidden), then 'awaiting_second', and once two reviewers have
    decided (decisions final) 'released_lead', 'disagreement' or 'agreed' (both the same, not a lead)."""
    if not view.candidates:
        return {}
    if not who.can(Permission.REVIEW_DECIDE):
        return {
            c.rank: "under_review" if c.subject_external_id == release.UNDER_REVIEW else "released_lead"
            for c in view.candidates
        }
    decided = release.decisions_on(ctx, view.search_id)
    settled = release.adjudications_on(ctx, view.search_id)
    with ctx.db.read() as s:
        record = s.get(SearchRecord, view.search_id)
        level = release.level_of(ctx, record) if record is not None else DEFAULT_RELEASE_LEVEL
    states = {}
    for c in view.candidates:
        on_candidate = decided.get(c.face_id, {})
        if who.user_id not in on_candidate:
            states[c.rank] = "review_complete" if len(on_candidate) >= release.RELEASE_REVIEWERS else "blind"
        elif len(on_candidate) < release.RELEASE_REVIEWERS:
            states[c.rank] = "awaiting_second"
        else:
            outcome = release.release_status(on_candidate, view.user_id, settled.get(c.face_id), level)
            states[c.rank] = "agreed" if outcome == "under_review" else outcome
    return states


def _my_review(reviews: list[dict[str, Any]], who: Principal) -> dict[str, Any] | None:
    mine = [r for r in reviews if r["reviewer"] == who.username]
    return mine[-1] if mine else None


@router.get("/searches/{search_id}/candidates/{rank}/thumbnail.jpg")
def search_thumbnail(
    search_id: int,
    rank: int,
    face_id: int | None = None,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(web_principal),
) -> Response:
    return Response(
        candidate_thumbnail(ctx, who, search_id, rank, face_id),
        media_type="image/jpeg",
        headers={"cache-control": "private, no-store"},
    )
