"""The examiner's pages (docs/examination.md, docs/web-ui.md "Examinations"): the queue of tasks the system
assigned, the analysis of the probe alone (locks once recorded), the candidates (opaque handles, no order that
means anything), the side-by-side comparison with the FISWG checklist and notes pinned to image regions, and the
conclusion on the symmetric scale, after which the page shows what the search found for that candidate.

Guarantees: the routes are thin over facetrail.cases.examinations (the same functions as /api/v1/examinations),
which scopes every task to its reviewer, enforces sequential unmasking and audits each step and each refusal;
these pages only render what those functions return, so score, rank, estimated false-match rate and the subject
reach the HTML only in a candidate's ``reveal`` (present once the caller's own conclusion on it is recorded), and
the other examiner's conclusion and the case story only once the task is complete. Every form carries the
session's CSRF token; the images come from the API's image routes (same gate), drawn by /static/comparison.js.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from facetrail.cases import examinations
from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.examination import fiswg
from facetrail.examination.enhance import Operation
from facetrail.examination.scale import LABELS, Conclusion
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.deps import get_ctx
from facetrail.web.common import csrf_ok, form_data, render, see_other, web_require

router = APIRouter(include_in_schema=False)
examiner = web_require(Permission.REVIEW_DECIDE)

STAGES = {
    "probe_analysis": "analyse the probe",
    "comparison": "compare the candidates",
    "complete": "complete",
}
MARK_LABELS = (("similar", "Similar"), ("dissimilar", "Dissimilar"), ("not_visible", "Not visible"))
NOTICES = {
    "analysis": "Probe analysis recorded and locked.",
    "checklist": "Checklist saved.",
    "concluded": "Conclusion recorded. What the search found for this candidate is shown below.",
}
# the enhancement operations the panel offers: exactly those examination.enhance implements (nothing that adds
# content); static/comparison.js knows their parameters
ENHANCE_LABELS = {
    "rotation": "Rotation (90° steps)",
    "sharpen": "Sharpen (unsharp mask)",
    "denoise": "De-noise (median filter)",
}
ENHANCE_OPERATIONS = tuple((op.value, ENHANCE_LABELS.get(op.value, op.value.capitalize())) for op in Operation)


def _scale() -> list[tuple[str, str]]:
    return [(c.value, LABELS[c]) for c in Conclusion]


def _scale_labels() -> dict[str, str]:
    return {c.value: LABELS[c] for c in Conclusion}


def _components() -> list[dict[str, Any]]:
    return [
        {
            "name": c["component"],
            "label": c["label"],
            "characteristics": [
                {"name": ch, "label": ch.replace("_", " ").capitalize()} for ch in c["characteristics"]
            ],
        }
        for c in fiswg.definition()
    ]


def _label(task_id: str) -> str:
    return f"Examination {task_id[:8]}"


# ------------------------------------------------------------------ queue


@router.get("/examinations")
def queue(request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = examiner) -> Response:
    tasks = examinations.queue(ctx, who)
    mine = [p for p in examinations.proficiency(ctx, who) if p["reviewer"] == who.username]
    record = mine[0] if mine and mine[0]["comparisons"] else None
    return render(
        request,
        "exam_queue.html",
        title="Examinations",
        tasks=tasks,
        stages=STAGES,
        proficiency=record,
        scale=_scale(),
    )


# ------------------------------------------------------------------ the probe alone


def _probe_page(
    request: Request,
    task: dict[str, Any],
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
    notice: str | None = None,
) -> Response:
    return render(
        request,
        "exam_probe.html",
        status=status,
        title="Probe analysis",
        task=task,
        task_id=task["task_id"],
        task_label=_label(task["task_id"]),
        probe_src=task["probe_image_url"],
        analysis=task["probe_analysis"],
        factors=[{"name": k, "label": v} for k, v in fiswg.QUALITY_FACTORS.items()],
        ratings=fiswg.QUALITY_RATINGS,
        form=form or {},
        error=error,
        notice=notice,
    )


@router.get("/examinations/{task_id}")
def probe_analysis_page(
    task_id: str, request: Request, done: str = "", ctx: AppContext = Depends(get_ctx), who: Principal = examiner
) -> Response:
    return _probe_page(request, examinations.get_task(ctx, who, task_id), notice=NOTICES.get(done))


@router.post("/examinations/{task_id}/probe-analysis")
def probe_analysis_record(
    task_id: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = examiner,
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    quality = {
        name: {"rating": fields.get(f"rating__{name}", ""), "comment": fields.get(f"comment__{name}", "")}
        for name in fiswg.QUALITY_FACTORS
    }
    suitable = fields.get("suitable", "")
    try:
        if suitable not in ("yes", "no"):
            raise BadInputError("say whether the probe is suitable for comparison", field="suitable")
        examinations.record_probe_analysis(ctx, who, task_id, quality, suitable == "yes", fields.get("notes", ""))
    except (BadInputError, examinations.ProbeAnalysisLockedError) as exc:
        task = examinations.get_task(ctx, who, task_id)
        return _probe_page(request, task, status=422, error=exc.message, form=fields)
    return see_other(f"/examinations/{task_id}?done=analysis")


# ------------------------------------------------------------------ candidates


@router.get("/examinations/{task_id}/candidates")
def candidates(
    task_id: str, request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = examiner
) -> Response:
    listed = examinations.list_candidates(ctx, who, task_id)
    return render(
        request,
        "exam_candidates.html",
        title="Candidates",
        task_id=task_id,
        task_label=_label(task_id),
        candidates=[{**c, "label": _letter(int(c["position"]))} for c in listed],
        scale_labels=_scale_labels(),
    )


def _letter(position: int) -> str:
    """Candidates are named by their (shuffled) place in the list: A, B, … (nothing about rank)."""
    return f"Candidate {chr(ord('A') + position - 1)}" if 1 <= position <= 26 else f"Candidate {position}"


def _compare_page(
    request: Request,
    ctx: AppContext,
    who: Principal,
    task_id: str,
    handle: str,
    candidate: dict[str, Any],
    *,
    status: int = 200,
    error: str | None = None,
    marks: dict[str, Any] | None = None,
    annotations: list[dict[str, Any]] | None = None,
    measurements: list[dict[str, Any]] | None = None,
    notice: str | None = None,
) -> Response:
    task = examinations.get_task_quiet(ctx, who, task_id)
    checklist = candidate.get("checklist") or {}
    base = f"/api/v1/examinations/{task_id}/candidates/{handle}/photos"
    photos = [
        {
            "id": p["index"],
            "src": f"{base}/{p['index']}",
            "thumb_src": f"{base}/{p['index']}",
            "capture_date": p["capture_date"],
            "caption": f"photo {p['index'] + 1}, captured {p['capture_date'] or 'date unknown'}",
            "sha256": "",
        }
        for p in candidate.get("photos") or []
    ]
    components = _components()
    concluded = candidate.get("conclusion") is not None
    reveal = None
    if concluded:
        r = candidate.get("reveal") or {}
        other = r.get("other_conclusion") or {}
        reveal = {
            "conclusion": candidate["conclusion"],
            "concluded_at": candidate.get("concluded_at"),
            "reasoning": candidate.get("reasoning", ""),
            "limitations": candidate.get("limitations", ""),
            "rank": r.get("rank"),
            "similarity": r.get("similarity"),
            "estimated_fmr": r.get("estimated_fmr"),
            "subject": r.get("subject_external_id"),
            # the other examiner's conclusion only once the whole task is complete (the reveal has none before)
            "other_shown": "other_conclusion" in r,
            "other": [{"conclusion": other["conclusion"], "reviewer": "the other examiner"}]
            if other.get("conclusion")
            else None,
            "other_note": {"pending": "not yet concluded", "none": "none (a known-answer test)"}.get(
                str(other.get("status"))
            ),
            "known_answer": r.get("known_answer"),
            "case_number": (task.get("case") or {}).get("case_number"),
            "offense": (task.get("case") or {}).get("offense"),
        }
    return render(
        request,
        "exam_compare.html",
        status=status,
        title="Comparison",
        task_id=task_id,
        task_label=_label(task_id),
        candidate={"label": _letter(int(candidate["position"])), "handle": handle, "photos": photos},
        panes=[
            {
                "name": "probe",
                "title": "Probe",
                "src": task["probe_image_url"],
                "sha256": "",
                "image_id": "",
                "caption": "",
            },
            {
                "name": "candidate",
                "title": "Candidate",
                "src": photos[0]["src"] if photos else "",
                "sha256": "",
                "image_id": 0,
                "caption": photos[0]["caption"] if photos else "",
            },
        ],
        enhance_api=_enhance_api(task),
        enhance_operations=ENHANCE_OPERATIONS,
        components=components,
        component_labels={c["name"]: c["label"] for c in components},
        marks=marks if marks is not None else checklist.get("marks") or {},
        mark_options=MARK_LABELS,
        annotations=annotations if annotations is not None else checklist.get("annotations") or [],
        measurements=measurements if measurements is not None else checklist.get("measurements") or [],
        concluded=concluded,
        reveal=reveal,
        scale=_scale(),
        scale_labels=_scale_labels(),
        error=error,
        notice=notice,
    )


def _enhance_api(task: dict[str, Any]) -> str:
    """Where the enhancement panel posts its steps: the task-scoped API of facetrail.cases.enhancements (the same
    for live searches and known-answer tests, naming no rank, score or subject)."""
    return f"/api/v1/examinations/{task['task_id']}/enhancements"


@router.get("/examinations/{task_id}/candidates/{handle}")
def compare(
    task_id: str,
    handle: str,
    request: Request,
    done: str = "",
    ctx: AppContext = Depends(get_ctx),
    who: Principal = examiner,
) -> Response:
    candidate = examinations.open_candidate(ctx, who, task_id, handle)
    return _compare_page(request, ctx, who, task_id, handle, candidate, notice=NOTICES.get(done))


def _marks_from(form: FormData) -> dict[str, dict[str, dict[str, str]]]:
    marks: dict[str, dict[str, dict[str, str]]] = {}
    for component, (_label_text, characteristics) in fiswg.COMPONENTS.items():
        for ch in characteristics:
            key = f"{component}__{ch}"
            mark = form.get(f"mark__{key}")
            comment = form.get(f"comment__{key}")
            comment_text = comment.strip() if isinstance(comment, str) else ""
            if isinstance(mark, str) and mark:
                marks.setdefault(component, {})[ch] = {"mark": mark, "comment": comment_text}
    return marks


def _json_list(form: FormData, name: str, what: str) -> Any:
    """A list the page's script keeps in a hidden field (the core validates every entry)."""
    raw = form.get(name)
    if not isinstance(raw, str) or not raw.strip():
        return []
    try:
        return json.loads(raw)
    except ValueError:
        raise BadInputError(f"{what} could not be read", field=name) from None


@router.post("/examinations/{task_id}/candidates/{handle}/checklist")
def checklist_save(
    task_id: str,
    handle: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = examiner,
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    marks = _marks_from(form)
    annotations: Any = []
    measurements: Any = []
    try:
        annotations = _json_list(form, "annotations", "the pinned notes")
        measurements = _json_list(form, "measurements", "the measurements")
        examinations.save_checklist(ctx, who, task_id, handle, marks, annotations, measurements)
    except (BadInputError, examinations.ConclusionFinalError) as exc:
        candidate = examinations.open_candidate(ctx, who, task_id, handle)
        kept = annotations if isinstance(annotations, list) else None
        kept_measurements = measurements if isinstance(measurements, list) else None
        return _compare_page(
            request,
            ctx,
            who,
            task_id,
            handle,
            candidate,
            status=422,
            error=f"The checklist was not saved: {exc.message}",
            marks=marks,
            annotations=kept,
            measurements=kept_measurements,
        )
    return see_other(f"/examinations/{task_id}/candidates/{handle}?done=checklist#checklist-h")


@router.post("/examinations/{task_id}/candidates/{handle}/conclusion")
def conclusion_record(
    task_id: str,
    handle: str,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = examiner,
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    text = {
        k: (form.get(k) if isinstance(form.get(k), str) else "") for k in ("conclusion", "reasoning", "limitations")
    }
    try:
        examinations.record_conclusion(
            ctx, who, task_id, handle, str(text["conclusion"]), str(text["reasoning"]), str(text["limitations"])
        )
    except (BadInputError, examinations.ConclusionFinalError) as exc:
        candidate = examinations.open_candidate(ctx, who, task_id, handle)
        return _compare_page(
            request, ctx, who, task_id, handle, candidate, status=422, error=f"Not recorded: {exc.message}"
        )
    return see_other(f"/examinations/{task_id}/candidates/{handle}?done=concluded#conclusion")
