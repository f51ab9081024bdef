"""The policy document: what searches are allowed and under which conditions (docs/policy.md).

A TOML document, validated on load (pydantic, unknown keys refused), versioned in the database
(policy_versions: number, exact text, SHA-256, who, when). The highest version is in force; each change is
audited ('policy.apply') with a unified diff against the previous version. Until an administrator applies
one, the shipped default (facetrail/policy/default_policy.toml) is recorded as version 1 on first use.

The policy supersedes ServerSettings.offenses / legal_bases / similarity_floor and
RetentionSettings.probe_retention_days: those settings are no longer read by the search path.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import re
import threading
import tomllib
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from facetrail.audit.log import append_audit
from facetrail.audit.refusals import refuse
from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.examination.scale import DEFAULT_RELEASE_LEVEL
from facetrail.governance.models import PolicyVersion
from facetrail.governance.oversight_rules import AlertRules, CaseRules, LimitRules, SamplingRules
from facetrail.storage.models import SearchRecord, utcnow

ABSOLUTE_MIN_CANDIDATES, ABSOLUTE_MAX_CANDIDATES = 2, 50
DEFAULT_CASE_NUMBER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9 ./:#_-]{0,99}"
ALWAYS_REQUIRED = ("case_number", "offense", "justification")
KNOWN_FIELDS = (*ALWAYS_REQUIRED, "legal_basis")
MAX_POLICY_BYTES = 100_000
SYSTEM_ACTOR = "system"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchRules(_Strict):
    allowed_offenses: list[str] = Field(min_length=1)
    legal_bases: list[str] = Field(min_length=1)
    required_fields: list[str] = Field(default_factory=lambda: list(KNOWN_FIELDS))
    min_candidates: int = Field(ABSOLUTE_MIN_CANDIDATES, ge=ABSOLUTE_MIN_CANDIDATES, le=ABSOLUTE_MAX_CANDIDATES)
    max_candidates: int = Field(ABSOLUTE_MAX_CANDIDATES, ge=ABSOLUTE_MIN_CANDIDATES, le=ABSOLUTE_MAX_CANDIDATES)
    default_candidates: int = Field(20, ge=ABSOLUTE_MIN_CANDIDATES, le=ABSOLUTE_MAX_CANDIDATES)
    similarity_floor: float = Field(ge=-1.0, le=1.0)
    # Case numbers must match this (a Python regular expression, whole string) after NFKC normalisation: ASCII
    # only by default, so a look-alike from another script ("А-2026-001", Cyrillic А) is refused, not a new case.
    # Empty: any (then only control characters are refused). Verification against the agency's case list: [cases].
    case_number_pattern: str = Field(DEFAULT_CASE_NUMBER_PATTERN, max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> SearchRules:
        try:
            re.compile(self.case_number_pattern or "")
        except re.error as exc:
            raise ValueError(f"case_number_pattern is not a valid regular expression: {exc}") from None
        unknown = sorted(set(self.required_fields) - set(KNOWN_FIELDS))
        if unknown:
            raise ValueError(f"required_fields: unknown field(s) {unknown}; known: {list(KNOWN_FIELDS)}")
        missing = [f for f in ALWAYS_REQUIRED if f not in self.required_fields]
        if missing:
            raise ValueError(f"required_fields must include {list(ALWAYS_REQUIRED)} (missing {missing})")
        if not self.min_candidates <= self.default_candidates <= self.max_candidates:
            raise ValueError("candidates: need min_candidates <= default_candidates <= max_candidates")
        for name in ("allowed_offenses", "legal_bases"):
            values = getattr(self, name)
            if any(not v.strip() for v in values) or len(set(values)) != len(values):
                raise ValueError(f"{name}: entries must be non-blank and distinct")
        return self


class ApprovalRules(_Strict):
    offenses: list[str] = Field(default_factory=list)
    galleries: list[str] = Field(default_factory=list)
    emergency_window_hours: float = Field(48.0, gt=0, le=24 * 30)
    request_expiry_hours: float = Field(168.0, gt=0, le=24 * 90)
    emergency_legal_basis: str = "exigent-circumstances"


class ReviewRules(_Strict):
    # How a disagreement between the two reviewers of a candidate is settled (never by a third reviewer):
    # 'adjudicate': by one of the named adjudicators (reviewers), with a reason; 'not_released': by this rule.
    on_disagreement: Literal["adjudicate", "not_released"] = "adjudicate"
    adjudicators: list[str] = Field(default_factory=list)  # usernames of reviewers who may adjudicate


class ExaminationRules(_Strict):
    # A lead is released when both examiners conclude at or above this level on the same-source side
    # (docs/examination.md); neutral, the different-sources side and "not suitable" never release.
    release_level: Literal[
        "strong_support_same_source", "moderate_support_same_source", "limited_support_same_source"
    ] = DEFAULT_RELEASE_LEVEL  # type: ignore[assignment]
    # The share of live assignments that bring a known-answer test (from the agency's gallery) into the queue.
    known_answer_rate: float = Field(0.1, ge=0.0, le=0.5)


class RetentionRules(_Strict):
    probe_image_days: int = Field(30, ge=0, le=36_500)


class TrainingRules(_Strict):
    validity_days: int = Field(365, ge=1, le=3650)


# What a searcher declares the probe to be (every search declares one; docs/examination.md).
PROBE_DECLARATIONS = ("original", "edited", "composite_sketch")


class ProbeRules(_Strict):
    # The probe declarations a search may be run with; a search declaring another is refused (and audited).
    accepted: list[str] = Field(default_factory=lambda: ["original"], min_length=1)

    @model_validator(mode="after")
    def _known(self) -> ProbeRules:
        unknown = sorted(set(self.accepted) - set(PROBE_DECLARATIONS))
        if unknown:
            raise ValueError(f"probes.accepted: unknown declaration(s) {unknown}; known: {list(PROBE_DECLARATIONS)}")
        return self


class Policy(_Strict):
    search: SearchRules
    approval: ApprovalRules = ApprovalRules()
    retention: RetentionRules = RetentionRules()
    training: TrainingRules = TrainingRules()
    probes: ProbeRules = ProbeRules()
    review: ReviewRules = ReviewRules()
    examination: ExaminationRules = ExaminationRules()
    # Oversight (docs/oversight.md): applied by facetrail.oversight through the search path's hook.
    limits: LimitRules = LimitRules()
    cases: CaseRules = CaseRules()
    alerts: AlertRules = AlertRules()
    sampling: SamplingRules = SamplingRules()

    @model_validator(mode="after")
    def _approval_within_search(self) -> Policy:
        stray = sorted(set(self.approval.offenses) - set(self.search.allowed_offenses))
        if stray:
            raise ValueError(f"approval.offenses names offenses that are not allowed at all: {stray}")
        if self.approval.emergency_legal_basis not in self.search.legal_bases:
            raise ValueError("approval.emergency_legal_basis must be one of search.legal_bases")
        return self

    def needs_prior_approval(self, offense: str, gallery: str) -> bool:
        return offense in self.approval.offenses or gallery in self.approval.galleries


class PolicyError(BadInputError):
    code = "policy_invalid"


def default_policy_text() -> str:
    return (resources.files("facetrail.policy") / "default_policy.toml").read_text(encoding="utf-8")


def parse_policy(text: str) -> Policy:
    """The policy in ``text``, or a PolicyError listing every problem."""
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise PolicyError(f"the policy is over {MAX_POLICY_BYTES} bytes")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"not valid TOML: {exc}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}" for e in exc.errors()]
        raise PolicyError("the policy is invalid: " + "; ".join(problems), problems=problems) from None


# ------------------------------------------------------------------ versions in the database

_cache: dict[tuple[str, int], Policy] = {}  # (database url, version) -> parsed; versions never change
_cache_lock = threading.Lock()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _latest(session: Session) -> PolicyVersion | None:
    return session.execute(select(PolicyVersion).order_by(PolicyVersion.version.desc()).limit(1)).scalar_one_or_none()


def seed_text(ctx: AppContext) -> str:
    """Version 1: the shipped default, with the offenses, legal bases and similarity floor of the server
    settings (their only remaining use: an installation configured before the policy existed keeps its lists)."""
    server = ctx.settings.server
    values = {
        "allowed_offenses": json.dumps(list(server.offenses)),
        "legal_bases": json.dumps(list(server.legal_bases)),
        "similarity_floor": repr(float(server.similarity_floor)),
    }
    lines = []
    for line in default_policy_text().splitlines(keepends=True):
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key} = {values[key]}\n" if "=" in line and key in values else line)
    text = "".join(lines)
    if not _valid(text):  # settings that leave out an offense the default asks approval for: keep those only
        allowed = set(server.offenses)
        text = text.replace(
            'offenses = ["burglary", "fraud"]',
            "offenses = " + json.dumps([o for o in ("burglary", "fraud") if o in allowed]),
        )
    return text


def _valid(text: str) -> bool:
    try:
        parse_policy(text)
    except PolicyError:
        return False
    return True


def _seed_default(ctx: AppContext) -> None:
    text = seed_text(ctx)
    parse_policy(text)
    with ctx.db.transaction() as s:
        if _latest(s) is not None:
            return
        s.add(PolicyVersion(version=1, text=text, sha256=_sha(text), created_by=SYSTEM_ACTOR))
        s.flush()
        append_audit(
            s,
            actor=SYSTEM_ACTOR,
            action="policy.apply",
            target="policy:1",
            details={"version": 1, "sha256": _sha(text), "source": "shipped default", "diff": _diff("", text, 0, 1)},
        )


def active_version(ctx: AppContext) -> tuple[int, Policy]:
    """The policy in force and its version (recording the shipped default as version 1 if there is none)."""
    with ctx.db.read() as s:
        row = _latest(s)
        version, text = (row.version, row.text) if row else (0, "")
    if row is None:
        with contextlib.suppress(IntegrityError):  # another process recorded version 1 at the same moment
            _seed_default(ctx)
        return active_version(ctx)
    return version, policy_of_version(ctx, version, text)


def active_policy(ctx: AppContext) -> Policy:
    return active_version(ctx)[1]


def policy_of_version(ctx: AppContext, version: int | None, text: str | None = None) -> Policy:
    """A recorded version's policy (the one in force if ``version`` is None or unknown)."""
    if version is None:
        return active_policy(ctx)
    key = (ctx.db.url, version)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    if text is None:
        with ctx.db.read() as s:
            row = s.get(PolicyVersion, version)
            if row is None:
                return active_policy(ctx)
            text = row.text
    policy = parse_policy(text)
    with _cache_lock:
        _cache[key] = policy
    return policy


def _diff(old: str, new: str, old_version: int, new_version: int) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"policy v{old_version}",
            tofile=f"policy v{new_version}",
        )
    )


def apply_policy(
    ctx: AppContext,
    text: str,
    *,
    actor: str,
    audit_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate and record ``text`` as the next version (audited with the diff). An invalid document is refused,
    and the refusal audited, leaving the version in force unchanged."""
    active_version(ctx)  # the default is version 1, so the first applied document diffs against it
    try:
        parse_policy(text)
    except PolicyError as exc:
        raise refuse(
            ctx, actor, "policy.apply", "policy", exc, details={"sha256": _sha(text), **(audit_context or {})}
        ) from None
    with ctx.db.transaction() as s:
        previous = _latest(s)
        old_version, old_text = (previous.version, previous.text) if previous else (0, "")
        if previous is not None and previous.text == text:
            raise BadInputError(f"the policy is identical to version {old_version}; nothing applied", field="policy")
        row = PolicyVersion(
            version=old_version + 1, text=text, sha256=_sha(text), created_by=actor, created_at=utcnow()
        )
        s.add(row)
        s.flush()
        append_audit(
            s,
            actor=actor,
            action="policy.apply",
            target=f"policy:{row.version}",
            details={
                "version": row.version,
                "previous_version": old_version,
                "sha256": row.sha256,
                "diff": _diff(old_text, text, old_version, row.version),
                **(audit_context or {}),
            },
        )
        return version_dict(row)


def version_dict(row: PolicyVersion, *, with_text: bool = True) -> dict[str, Any]:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=utcnow().tzinfo)
    out: dict[str, Any] = {
        "version": row.version,
        "sha256": row.sha256,
        "created_by": row.created_by,
        "created_at": created,
    }
    if with_text:
        out["text"] = row.text
    return out


def show_policy(ctx: AppContext) -> dict[str, Any]:
    """The version in force: its text, hash, author and parsed fields."""
    version, policy = active_version(ctx)
    with ctx.db.read() as s:
        row = s.get(PolicyVersion, version)
        assert row is not None
        return {**version_dict(row), "policy": policy.model_dump()}


def policy_history(ctx: AppContext) -> list[dict[str, Any]]:
    """Every version, newest first, with who applied it and when (texts: see show / the audit diffs)."""
    active_version(ctx)
    with ctx.db.read() as s:
        rows = s.execute(select(PolicyVersion).order_by(PolicyVersion.version.desc())).scalars()
        return [version_dict(r, with_text=False) for r in rows]


# ------------------------------------------------------------------ every search records the version in force


@event.listens_for(SearchRecord, "before_insert")
def _stamp_policy_version(_mapper: Any, connection: Any, target: SearchRecord) -> None:
    """In the search's own INSERT transaction, so the version recorded is the one in force when it was written."""
    if target.policy_version is None:
        target.policy_version = connection.execute(select(func.max(PolicyVersion.version))).scalar()


def similarity_floor_for(ctx: AppContext, version: int | None) -> float:
    """The similarity floor of the policy a search ran under (the one in force for older searches)."""
    return policy_of_version(ctx, version).search.similarity_floor
