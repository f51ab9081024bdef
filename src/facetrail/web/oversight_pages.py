"""The Oversight page: anomaly alerts with per-user timeline charts (PNG, rendered on the server: no script)
and acknowledgement forms (the unit's reviewers, auditors), the random audit sample with finding forms
(auditors) and the oversight e-mails. Thin: the same core functions as the REST API (service/api/oversight.py),
which check scope and write the audit records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from facetrail.context import AppContext
from facetrail.errors import FaceTrailError, PermissionDeniedError
from facetrail.oversight import alerts, notify, sampling
from facetrail.oversight.chart import timeline_png
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.api._common import require_any
from facetrail.service.deps import get_ctx
from facetrail.service.errors import status_for
from facetrail.web.common import csrf_ok, form_data, render, see_other, web_principal

router = APIRouter(include_in_schema=False)
NOTICES = {"acked": "Alert acknowledged.", "found": "Finding recorded."}


def _viewer(request: Request, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(web_principal)) -> Principal:
    """Reviewers (their unit) and auditors (all); others refused, audited."""
    return require_any(Permission.OVERSIGHT_VIEW_UNIT, Permission.OVERSIGHT_VIEW_ALL)(request, ctx, who)


viewer = Depends(_viewer)


def _page(request: Request, ctx: AppContext, who: Principal, status: int = 200, **extra: Any) -> Response:
    listed = alerts.list_alerts(ctx, who)
    users: dict[int, str] = {}
    for a in listed:
        if a["user_id"] is not None:
            users.setdefault(a["user_id"], a["user"] or str(a["user_id"]))
    samples = sampling.list_sample_items(ctx, who) if who.can(Permission.AUDIT_SAMPLE) else None
    return render(
        request,
        "oversight.html",
        status=status,
        title="Oversight",
        alerts=listed,
        missing=alerts.missing_from_table(ctx, who),
        users=users,
        may_ack=who.can(Permission.OVERSIGHT_ACK),
        samples=samples,
        checks=sampling.CHECKS,
        notifications=notify.list_notifications(ctx, who),
        **extra,
    )


@router.get("/oversight")
def oversight_page(
    request: Request, done: str = "", ctx: AppContext = Depends(get_ctx), who: Principal = viewer
) -> Response:
    return _page(request, ctx, who, notice=NOTICES.get(done))


@router.get("/oversight/users/{user_id}/timeline.png")
def timeline(user_id: int, ctx: AppContext = Depends(get_ctx), who: Principal = viewer) -> Response:
    return Response(timeline_png(ctx, who, user_id), media_type="image/png", headers={"cache-control": "no-store"})


@router.post("/oversight/alerts/{alert_id}/ack")
def acknowledge(
    alert_id: int,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = viewer,
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    try:
        alerts.acknowledge(ctx, who, alert_id, str(form.get("note") or ""))
    except PermissionDeniedError:
        raise
    except FaceTrailError as exc:
        return _page(request, ctx, who, status=status_for(exc), error=f"Alert {alert_id}: {exc.message}")
    return see_other(f"/oversight?done=acked#alert-{alert_id}")


@router.post("/oversight/samples/{item_id}/finding")
def finding(
    item_id: int,
    request: Request,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = viewer,
    form: FormData = Depends(form_data),
) -> Response:
    csrf_ok(request, form)
    checks = {c: form.get(c) == "yes" for c in sampling.CHECKS}
    try:
        sampling.record_finding(ctx, who, item_id, checks, str(form.get("note") or ""))
    except PermissionDeniedError:
        raise
    except FaceTrailError as exc:
        return _page(request, ctx, who, status=status_for(exc), error=f"Sample item {item_id}: {exc.message}")
    return see_other(f"/oversight?done=found#sample-{item_id}")
