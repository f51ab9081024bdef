"""Pieces the disclosure packet and the transparency report share: the audit-chain status, the model and
thresholds in force, and what counts as a released lead."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from facetrail.audit.service import latest_witness, verify_with_settings
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.examination.scale import DEFAULT_RELEASE_LEVEL, supports_same_source
from facetrail.faces.calibration import load_calibration
from facetrail.governance.release import RELEASE_REVIEWERS as RELEASE_REVIEWERS
from facetrail.governance.release import ReviewAdjudication, is_released, panel, release_status
from facetrail.storage.models import CandidateReview

# The two-person rule (issue 5, facetrail.governance.release): a candidate is a released lead once
# RELEASE_REVIEWERS different reviewers, none of them the searcher, have marked it a possible lead. Both
# outputs derive releases from the current review decisions with that rule.
POSSIBLE_LEAD = "possible_lead"


def aware(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes for timezone-aware columns; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def iso(value: dt.datetime) -> str:
    return aware(value).isoformat(timespec="seconds")


def chain_status(ctx: AppContext) -> dict[str, Any]:
    """The audit chain's verification (with the signed checkpoints), as stated on a packet or report."""
    result = verify_with_settings(ctx)
    return {
        "checkpoint": latest_witness(ctx),
        "ok": result.ok,
        "records": result.records,
        "head_seq": result.head_seq,
        "head_hash": result.head_hash,
        "checkpoints_checked": result.checkpoints_checked,
        "last_checkpoint_seq": result.last_checkpoint_seq,
        "problem": result.problem,
        "warnings": list(result.warnings),
    }


def chain_sentence(chain: dict[str, Any]) -> str:
    if chain["ok"]:
        cps = f"; {chain['checkpoints_checked']} signed checkpoint(s) hold" if chain["checkpoints_checked"] else ""
        return f"intact: {chain['records']:,} records verified, head {chain['head_seq']}{cps}"
    return f"BROKEN: {chain['problem']}"


def configured_model_id(ctx: AppContext) -> str:
    """The embedding model new searches and enrolments use (loading it if needed), or why it is unknown."""
    from facetrail.gallery.service import pipeline_for

    try:
        return pipeline_for(ctx.settings).model_id
    except FaceTrailError as exc:
        return f"unavailable ({exc.message})"


def thresholds_for(ctx: AppContext, model_id: str) -> dict[str, Any]:
    """The similarity floor (candidates below it are never shown) and the 1:1 decision threshold at the
    configured false-match rate, from the model's calibration table."""
    out: dict[str, Any] = {
        "model_id": model_id,
        "similarity_floor": ctx.settings.server.similarity_floor,
        "target_fmr": ctx.settings.verify.target_fmr,
        "decision_threshold": None,
    }
    try:
        calibration = load_calibration(model_id)
    except FaceTrailError as exc:
        out["calibration"] = f"unavailable ({exc.message})"
        return out
    out["decision_threshold"] = round(calibration.threshold_for(ctx.settings.verify.target_fmr), 5)
    out["floor_estimated_fmr"] = calibration.fmr_at(ctx.settings.server.similarity_floor)
    out["calibration"] = f"{calibration.impostor_comparisons:,} impostor comparisons ({calibration.source})"
    return out


@dataclass(frozen=True)
class CandidateDecisions:
    """The current decisions on one candidate of one search, by reviewer id."""

    search_id: int
    face_id: int
    decisions: dict[int, str]  # in the order the reviewers first decided (conclusions on the scale)
    adjudication: str | None = None
    level: str = DEFAULT_RELEASE_LEVEL  # the release level of the policy the search ran under

    def leads_from(self, searcher_id: int | None) -> int:
        """Panel conclusions at or above the release level (the first two reviewers; a third never votes)."""
        return sum(1 for d in panel(self.decisions, searcher_id).values() if supports_same_source(d, self.level))

    def released(self, searcher_id: int | None) -> bool:
        return is_released(self.decisions, searcher_id, self.adjudication, self.level)

    @property
    def disagreement(self) -> bool:
        """One panel conclusion at or above the release level, the other not."""
        return release_status(dict(list(self.decisions.items())[:2]), None, None, self.level) == "disagreement"


def group_decisions(
    reviews: Iterable[CandidateReview],
    adjudications: Iterable[ReviewAdjudication] = (),
    levels: dict[int, str] | None = None,
) -> dict[tuple[int, int], CandidateDecisions]:
    """Reviews grouped by (search id, face id), reviewers in the order they first decided; ``levels``: the
    release level per search id (default: the shipped default)."""
    grouped: dict[tuple[int, int], dict[int, str]] = defaultdict(dict)
    for review in sorted(reviews, key=lambda r: r.id):
        grouped[(review.search_id, review.face_id)][review.reviewer_id] = review.decision
    settled = {(a.search_id, a.face_id): a.decision for a in adjudications}
    return {
        key: CandidateDecisions(
            key[0], key[1], decisions, settled.get(key), (levels or {}).get(key[0], DEFAULT_RELEASE_LEVEL)
        )
        for key, decisions in grouped.items()
    }


def release_levels(ctx: AppContext, records: Iterable[Any]) -> dict[int, str]:
    """search id -> the release level of the policy it ran under."""
    from facetrail.governance.policy import policy_of_version

    return {r.id: policy_of_version(ctx, r.policy_version).examination.release_level for r in records}
