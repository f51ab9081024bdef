"""Oversight (docs/oversight.md): anomaly alerts and their acknowledgement (the unit's reviewers, auditors),
the random audit sample and its findings (auditors), queued e-mails. Including this router also starts the
server's oversight schedule (its lifespan)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, Field

from facetrail.context import AppContext
from facetrail.oversight import alerts, notify, sampling
from facetrail.oversight.scheduler import OversightScheduler
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.service.api._common import ERROR_RESPONSES, IdPath, require_any
from facetrail.service.deps import get_ctx, require


@asynccontextmanager
async def _schedule(app: FastAPI) -> AsyncIterator[None]:
    scheduler = OversightScheduler(app.state.ctx)
    scheduler.start()
    try:
        yield
    finally:
        scheduler.stop()


router = APIRouter(tags=["oversight"], responses=ERROR_RESPONSES, lifespan=_schedule)
VIEW = require_any(Permission.OVERSIGHT_VIEW_UNIT, Permission.OVERSIGHT_VIEW_ALL)


class AckIn(BaseModel):
    note: str = Field(min_length=1, max_length=alerts.MAX_NOTE, description="What was found or done (required).")


class FindingIn(BaseModel):
    case_real: bool
    justification_adequate: bool
    offense_right: bool
    note: str = Field("", max_length=sampling.MAX_NOTE, description="Required when a check fails.")


@router.get("/oversight/alerts", summary="Anomaly alerts in the caller's scope, newest first")
def list_alerts(
    open_only: bool = False, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(VIEW)
) -> list[dict[str, Any]]:
    return alerts.list_alerts(ctx, who, open_only=open_only)


@router.post("/oversight/alerts/{alert_id}/ack", summary="Acknowledge an alert with a note (audited)")
def acknowledge(
    alert_id: IdPath,
    body: AckIn,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.OVERSIGHT_ACK)),
) -> dict[str, Any]:
    return alerts.acknowledge(ctx, who, alert_id, body.note)


@router.get("/oversight/samples", summary="Searches drawn for the audit sample, with findings")
def list_samples(
    pending_only: bool = False,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.AUDIT_SAMPLE)),
) -> list[dict[str, Any]]:
    return sampling.list_sample_items(ctx, who, pending_only=pending_only)


@router.post("/oversight/samples/{item_id}/finding", summary="Record the finding on a drawn search (audited)")
def record_finding(
    item_id: IdPath,
    body: FindingIn,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.AUDIT_SAMPLE)),
) -> dict[str, Any]:
    checks = {c: getattr(body, c) for c in sampling.CHECKS}
    return sampling.record_finding(ctx, who, item_id, checks, body.note)


@router.get("/oversight/notifications", summary="Oversight e-mails in the caller's scope and their status")
def list_notifications(ctx: AppContext = Depends(get_ctx), who: Principal = Depends(VIEW)) -> list[dict[str, Any]]:
    return notify.list_notifications(ctx, who)
