"""Per-gallery retention rules and subject dispositions.

A rule is small structured text (JSON or TOML), validated on save and stored canonically, e.g.::

    delete_after_years = 7
    delete_on_disposition = ["released", "acquitted", "expunged"]

- ``delete_after_years`` / ``delete_after_days``: a face is due this long after its capture date (its
  enrolment date when no capture date was given); a subject is due when all its faces are (a subject left
  without faces: this long after it was created).
- ``delete_on_disposition``: a subject whose record is marked with one of these outcomes is due at once.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import tomllib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.gallery.service import load_gallery, load_subject
from facetrail.retention.models import RetentionRuleRow, SubjectDisposition

DISPOSITIONS = ("active", "released", "acquitted", "expunged")
Closing = Literal["released", "acquitted", "expunged"]


class RetentionRuleError(BadInputError):
    code = "bad_retention_rule"


class RetentionRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    delete_after_years: int | None = Field(None, ge=1, le=100)
    delete_after_days: int | None = Field(None, ge=1, le=36_500)
    delete_on_disposition: list[Closing] = Field(default_factory=list)

    @model_validator(mode="after")
    def _says_something(self) -> RetentionRule:
        if self.delete_after_years is None and self.delete_after_days is None and not self.delete_on_disposition:
            raise ValueError("a rule needs delete_after_years, delete_after_days or delete_on_disposition")
        if len(set(self.delete_on_disposition)) != len(self.delete_on_disposition):
            raise ValueError("delete_on_disposition lists an outcome twice")
        return self

    @property
    def has_age_limit(self) -> bool:
        return self.delete_after_years is not None or self.delete_after_days is not None

    def due_date(self, reference: dt.date) -> dt.date | None:
        """The first day on which a record dated ``reference`` is due; None if the rule sets no age limit."""
        if not self.has_age_limit:
            return None
        day = reference
        if self.delete_after_years:
            year = day.year + self.delete_after_years
            day = day.replace(year=year, day=min(day.day, calendar.monthrange(year, day.month)[1]))  # 29 Feb
        return day + dt.timedelta(days=self.delete_after_days or 0)

    def to_json(self) -> str:
        data = self.model_dump(exclude_none=True)
        data["delete_on_disposition"] = sorted(self.delete_on_disposition)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        parts = []
        if self.has_age_limit:
            age = " ".join(
                f"{n} {unit}" for n, unit in ((self.delete_after_years, "years"), (self.delete_after_days, "days")) if n
            )
            parts.append(f"{age} after capture (or enrolment)")
        if self.delete_on_disposition:
            parts.append("when marked " + " / ".join(sorted(self.delete_on_disposition)))
        return "delete " + "; ".join(parts)


def parse_rule(text: str) -> RetentionRule:
    """A rule from JSON (starting with '{') or TOML text; RetentionRuleError names what is wrong."""
    text = (text or "").strip()
    if not text:
        raise RetentionRuleError("the retention rule is empty")
    try:
        data: Any = json.loads(text) if text.startswith("{") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RetentionRuleError(f"the retention rule is neither valid JSON nor valid TOML: {exc}") from None
    try:
        return RetentionRule.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'rule'}: {e['msg']}" for e in exc.errors())
        raise RetentionRuleError(f"invalid retention rule: {problems}") from None


def load_rule(session: Session, gallery_id: int) -> RetentionRule | None:
    row = session.get(RetentionRuleRow, gallery_id)
    return None if row is None else RetentionRule.model_validate_json(row.rule)


def set_rule(ctx: AppContext, gallery_name: str, text: str | None, *, actor: str) -> RetentionRule | None:
    """Set (or, with None, remove) a gallery's rule; audited 'retention.rule' with the old and new rule."""
    rule = None if text is None else parse_rule(text)
    with ctx.db.transaction() as session:
        gallery = load_gallery(session, gallery_name)
        row = session.get(RetentionRuleRow, gallery.id)
        old = None if row is None else json.loads(row.rule)
        if rule is None:
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(RetentionRuleRow(gallery_id=gallery.id, rule=rule.to_json(), updated_by=actor))
        else:
            row.rule, row.updated_by, row.updated_at = rule.to_json(), actor, dt.datetime.now(dt.UTC)
        append_audit(
            session,
            actor=actor,
            action="retention.rule",
            target=f"gallery:{gallery.name}",
            details={
                "gallery_id": gallery.id,
                "old": old,
                "new": None if rule is None else json.loads(rule.to_json()),
            },
        )
    return rule


def get_rule(ctx: AppContext, gallery_name: str) -> RetentionRule | None:
    with ctx.db.read() as session:
        return load_rule(session, load_gallery(session, gallery_name).id)


def set_disposition(
    ctx: AppContext, gallery_name: str, external_id: str, disposition: str, *, actor: str, reason: str = ""
) -> dict[str, Any]:
    """Record a subject's outcome (released / acquitted / expunged, or back to active); audited."""
    if disposition not in DISPOSITIONS:
        raise BadInputError(
            f"disposition must be one of {', '.join(DISPOSITIONS)}, not {disposition!r}", field="disposition"
        )
    with ctx.db.transaction() as session:
        gallery = load_gallery(session, gallery_name)
        subject = load_subject(session, gallery, external_id)
        row = session.get(SubjectDisposition, subject.id)
        old = "active" if row is None else row.disposition
        if disposition == "active":
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(SubjectDisposition(subject_id=subject.id, disposition=disposition, set_by=actor, reason=reason))
        else:
            row.disposition, row.set_by, row.reason = disposition, actor, reason
            row.set_at = dt.datetime.now(dt.UTC)
        append_audit(
            session,
            actor=actor,
            action="subject.disposition",
            target=f"gallery:{gallery.name}",
            details={
                "gallery_id": gallery.id,
                "external_id": external_id,
                "old": old,
                "new": disposition,
                "reason": reason,
            },
        )
    return {"gallery": gallery_name, "external_id": external_id, "disposition": disposition, "previous": old}


def dispositions(session: Session, gallery_id: int) -> dict[int, str]:
    """subject id -> disposition, for the gallery's subjects that are not active."""
    from facetrail.storage.models import Subject

    rows = session.execute(
        select(SubjectDisposition.subject_id, SubjectDisposition.disposition)
        .join(Subject, Subject.id == SubjectDisposition.subject_id)
        .where(Subject.gallery_id == gallery_id)
    ).all()
    return {int(sid): str(d) for sid, d in rows}
