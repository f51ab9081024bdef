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
from facetrail.faces.calibration import load_calibration
from facetrail.governance.release import RELEASE_REVIEWERS as RELEASE_REVIEWERS
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
    decisions: dict[int, str]

    def leads_from(self, searcher_id: int | None) -> int:
        return sum(1 for reviewer, d in self.decisions.items() if d == POSSIBLE_LEAD and reviewer != searcher_id)

    def released(self, searcher_id: int | None) -> bool:
        return self.leads_from(searcher_id) >= RELEASE_REVIEWERS

    @property
    def disagreement(self) -> bool:
        """Two reviewers of the same candidate decided differently."""
        return len(set(self.decisions.values())) > 1


def group_decisions(reviews: Iterable[CandidateReview]) -> dict[tuple[int, int], CandidateDecisions]:
    """Reviews grouped by (search id, face id)."""
    grouped: dict[tuple[int, int], dict[int, str]] = defaultdict(dict)
    for review in reviews:
        grouped[(review.search_id, review.face_id)][review.reviewer_id] = review.decision
    return {key: CandidateDecisions(key[0], key[1], decisions) for key, decisions in grouped.items()}
