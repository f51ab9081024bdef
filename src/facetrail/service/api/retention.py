"""Retention rules and runs, subject dispositions, deletion certificates (retention.manage) and legal holds
(legal_hold.manage). Including this router also starts the server's retention schedule (its lifespan)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, Field

from facetrail.context import AppContext
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Permission
from facetrail.retention import holds, rules
from facetrail.retention.deletion import get_certificate
from facetrail.retention.run import run_retention
from facetrail.retention.scheduler import RetentionScheduler
from facetrail.service.api._common import ERROR_RESPONSES, IdPath, require_any
from facetrail.service.deps import get_ctx, require


@asynccontextmanager
async def _schedule(app: FastAPI) -> AsyncIterator[None]:
    scheduler = RetentionScheduler(app.state.ctx)
    scheduler.start()
    app.state.retention_scheduler = scheduler
    try:
        yield
    finally:
        scheduler.stop()


router = APIRouter(tags=["retention"], responses=ERROR_RESPONSES, lifespan=_schedule)


class RuleOut(BaseModel):
    gallery: str
    rule: dict[str, Any] | None
    description: str | None


class RuleIn(BaseModel):
    rule: str | None = Field(max_length=10_000, description="JSON or TOML text (docs/retention.md); null removes it.")


class RunIn(BaseModel):
    dry_run: bool = Field(description="Plan and report only. Required, so that no empty request deletes anything.")


class DispositionIn(BaseModel):
    disposition: Literal["active", "released", "acquitted", "expunged"]
    reason: str = Field("", max_length=10_000)


class HoldIn(BaseModel):
    gallery: str | None = Field(None, max_length=200)
    external_id: str | None = Field(None, max_length=200)
    case_number: str | None = Field(None, max_length=100)
    reason: str = Field(min_length=1, max_length=10_000)


class LiftIn(BaseModel):
    reason: str = Field(min_length=1, max_length=10_000)


def _rule_out(gallery: str, rule: rules.RetentionRule | None) -> RuleOut:
    return RuleOut(
        gallery=gallery,
        rule=None if rule is None else rule.model_dump(exclude_none=True),
        description=None if rule is None else rule.describe(),
    )


@router.get("/retention/rules/{name}", response_model=RuleOut, summary="A gallery's retention rule")
def get_rule(
    name: str, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(require(Permission.RETENTION_MANAGE))
) -> RuleOut:
    return _rule_out(name, rules.get_rule(ctx, name))


@router.put("/retention/rules/{name}", response_model=RuleOut, summary="Set or remove a retention rule (audited)")
def put_rule(
    name: str,
    body: RuleIn,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.RETENTION_MANAGE)),
) -> RuleOut:
    return _rule_out(name, rules.set_rule(ctx, name, body.rule, actor=who.actor))


@router.post("/retention/run", summary="Apply the retention rules now, or plan them (dry run)")
def run(
    body: RunIn, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(require(Permission.RETENTION_MANAGE))
) -> dict[str, Any]:
    return run_retention(ctx, dry_run=body.dry_run, actor=who.actor).to_dict()


@router.get("/retention/certificates/{seq}", summary="A deletion certificate (an audit record)")
def certificate(
    seq: IdPath,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require_any(Permission.RETENTION_MANAGE, Permission.AUDIT_READ)),
) -> dict[str, Any]:
    return get_certificate(ctx, seq)


@router.put("/galleries/{name}/subjects/{external_id}/disposition", summary="Record a subject's disposition (audited)")
def put_disposition(
    name: str,
    external_id: str,
    body: DispositionIn,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.RETENTION_MANAGE)),
) -> dict[str, Any]:
    return rules.set_disposition(ctx, name, external_id, body.disposition, actor=who.actor, reason=body.reason)


@router.get("/holds", summary="Legal holds in force")
def list_holds(
    include_lifted: bool = False,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.LEGAL_HOLD)),
) -> list[dict[str, Any]]:
    return holds.list_holds(ctx, include_lifted=include_lifted)


@router.post("/holds", status_code=201, summary="Place a legal hold on a subject or a case (audited)")
def add_hold(
    body: HoldIn, ctx: AppContext = Depends(get_ctx), who: Principal = Depends(require(Permission.LEGAL_HOLD))
) -> dict[str, Any]:
    subject = None
    if body.gallery is not None or body.external_id is not None:
        subject = (body.gallery or "", body.external_id or "")
    return holds.add_hold(ctx, actor=who.actor, reason=body.reason, subject=subject, case_number=body.case_number)


@router.post("/holds/{hold_id}/lift", summary="Lift a legal hold (audited)")
def lift_hold(
    hold_id: IdPath,
    body: LiftIn,
    ctx: AppContext = Depends(get_ctx),
    who: Principal = Depends(require(Permission.LEGAL_HOLD)),
) -> dict[str, Any]:
    return holds.lift_hold(ctx, hold_id, actor=who.actor, reason=body.reason)
