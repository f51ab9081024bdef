"""Attack: one reviewer breaks a case's PDF disclosure packet for everybody with a note that reportlab cannot
lay out (a 5,000-character single word made it raise LayoutError, answered 500, yet audited 'case.packet ok').
Any text a user can enter must render; a render that fails is audited as failed, never as delivered."""

from __future__ import annotations

import json
from typing import Any

import backends
import pytest
from gov_world import GovWorld, conclude_as, examiners
from hypothesis import given, settings
from hypothesis import strategies as st
from reportlab.platypus.doctemplate import LayoutError
from sqlalchemy import select

from facetrail.context import AppContext
from facetrail.governance.policy import active_version
from facetrail.reports.packet import OPERATOR_SCOPE, Packet, PacketRenderError, collect_packet
from facetrail.reports.packet_pdf import render_pdf
from facetrail.storage.models import AuditRecord, SearchRecord

CASE = "2026-0810"
BACKENDS = backends.BACKENDS
backend_ctx = backends.backend_ctx  # the fixture: SQLite and PostgreSQL


@pytest.fixture(scope="module")
def reviewed_case(gov_world: GovWorld) -> int:
    r = gov_world.search(case_number=CASE)
    assert r.status_code == 201, r.text
    search_id = int(r.json()["search_id"])
    long_word = "A" * 5000  # one word, as long as reasoning may be
    first, second = examiners(gov_world, search_id)
    r = conclude_as(gov_world, first, search_id, 1, "neutral", long_word)
    assert r.status_code == 200, r.text
    notes = "\n".join(["wide" * 400] * 3) + " ≈ ≥ — é ü 漢字 🙂"
    r = conclude_as(gov_world, second, search_id, 1, "strong_support_different_sources", notes)
    assert r.status_code == 200, r.text
    return search_id


def test_long_single_word_note_still_renders(gov_world: GovWorld, reviewed_case: int) -> None:
    for user in ("aud", "rev1"):
        with gov_world.client(user) as client:
            r = client.get(f"/api/v1/cases/{CASE}/packet")
        assert r.status_code == 200, r.text
        assert r.content.startswith(b"%PDF")
    delivered = [a for a in gov_world.audit(action="case.packet") if a["target"] == f"case:{CASE}"]
    assert delivered and {a["outcome"] for a in delivered} == {"ok"}


def _template() -> dict[str, Any]:
    """A packet as collect_packet builds it: one search, a released candidate with two decisions, its history."""
    decision = {"rank": 1, "face_id": 7, "reviewer": "rev1", "reviewer_name": "Rita", "decision": "possible_lead"}
    return {
        "kind": "disclosure_packet",
        "format_version": 1,
        "case_number": CASE,
        "generated_at": "2026-12-01T10:00:00+00:00",
        "generated_by": "user:aud",
        "scope": "all units",
        "notice": "Investigative leads only",
        "audit_chain": {"ok": True, "records": 10, "head_seq": 10, "checkpoints_checked": 0, "problem": None},
        "audit_seq": 11,
        "summary": {
            "searches": 1,
            "first_search_at": "2026-12-01T09:00:00+00:00",
            "last_search_at": "2026-12-01T09:00:00+00:00",
            "searches_with_released_leads": 1,
            "searches_without_candidates_shown": 0,
            "review_decisions": 2,
            "refused_attempts": 1,
        },
        "searches": [
            {
                "search_id": 1,
                "run_at": "2026-12-01T09:00:00+00:00",
                "run_by": {
                    "actor": "user:inv",
                    "username": "inv",
                    "display_name": "Ivan",
                    "role": "investigator",
                    "unit": "north",
                },
                "audit_seq": 3,
                "approval": None,
                "emergency": None,
                "policy_version": "1",
                "gallery": "bookings",
                "offense": "robbery",
                "legal_basis": "warrant",
                "justification": "CCTV",
                "model": {"model_id": "sface", "similarity_floor": 0.3, "target_fmr": 1e-4, "decision_threshold": 0.5},
                "probe": {
                    "sha256": "0" * 64,
                    "image_kept": False,
                    "face_index": 0,
                    "faces_in_probe": 1,
                    "thumbnail_jpeg_base64": None,
                    "thumbnail_note": "not kept",
                },
                "candidates_requested": 5,
                "candidates": [
                    {
                        "rank": 1,
                        "subject_id": 3,
                        "subject_external_id": "B-OBAMA",
                        "face_id": 7,
                        "similarity": 0.61,
                        "estimated_fmr": 1e-6,
                        "shown": True,
                        "decisions": [
                            {**decision, "notes": "n", "decided_at": "2026-12-01T09:10:00+00:00"},
                            {**decision, "reviewer": "rev2", "notes": "m", "decided_at": "2026-12-01T09:20:00+00:00"},
                        ],
                        "possible_lead_votes": 2,
                        "released": True,
                    }
                ],
                "candidates_shown": 1,
                "outcome": "released lead(s)",
                "review_history": [
                    {
                        "audit_seq": 4,
                        "at": "2026-12-01T09:10:00+00:00",
                        "reviewer": "user:rev1",
                        "rank": 1,
                        "face_id": 7,
                        "decision": "possible_lead",
                        "previous_decision": None,
                        "notes": "n",
                    },
                ],
            }
        ],
        "refused_attempts": [],
    }


# Everything a user can type somewhere: control characters included (older records, or text that came in
# before the free-text checks), very long words, right-to-left text, emoji and unassigned code points.
user_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=6000),
    st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(1, 6000)),
    st.sampled_from(["\u202e" * 50, "<b>unclosed", "&amp;&lt;", "]]>", "\x00\x01\x1b", "<para>", "\u0000" * 10]),
)


@settings(max_examples=40, deadline=None)
@given(notes=user_text, justification=user_text, other=user_text, case_number=st.text(max_size=100))
def test_every_text_field_renders(notes: str, justification: str, other: str, case_number: str) -> None:
    data = _template()
    data["case_number"] = case_number
    data["generated_by"] = other
    for entry in data["searches"]:
        entry["justification"] = justification
        entry["gallery"] = other
        entry["offense"] = other
        entry["run_by"]["display_name"] = other
        for history in entry["review_history"]:
            history["notes"] = notes
            history["reviewer"] = other
        for candidate in entry["candidates"]:
            candidate["subject_external_id"] = other
            for decision in candidate.get("decisions") or []:
                decision["notes"] = notes
                decision["reviewer_name"] = other
    data["refused_attempts"] = [
        {
            "audit_seq": 1,
            "at": "2026-01-01T00:00:00+00:00",
            "actor": other,
            "gallery": other,
            "offense": other,
            "error_code": "bad_input",
            "error": notes,
        }
    ]
    pdf = render_pdf(Packet(case_number, 1, json.loads(json.dumps(data))))
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000


@pytest.mark.parametrize("backend_ctx", BACKENDS, indirect=True)
def test_a_failed_render_is_audited_as_failed_not_delivered(backend_ctx: AppContext) -> None:
    ctx = backend_ctx
    active_version(ctx)  # the policy in force, recorded as every search does
    with ctx.db.transaction() as s:
        s.add(
            SearchRecord(
                actor="user:inv",
                gallery_name="bookings",
                case_number="2026-0811",
                offense="robbery",
                reason="test",
                legal_basis="warrant",
                probe_sha256="0" * 64,
                face_index=0,
                faces_in_probe=1,
                model_id="m",
                candidates_requested=5,
                candidates=[],
            )
        )

    def broken_renderer(packet: Packet) -> bytes:
        raise LayoutError("Flowable too large on page 1")  # what reportlab raised for the 5,000-character word

    with pytest.raises(PacketRenderError):
        collect_packet(ctx, "2026-0811", actor="user:aud", scope=OPERATOR_SCOPE, render=broken_renderer)
    with ctx.db.read() as s:
        outcomes = [
            (r.outcome, json.loads(r.details).get("error", {}).get("type"))
            for r in s.execute(select(AuditRecord).where(AuditRecord.action == "case.packet")).scalars()
        ]
    assert outcomes == [("failed", "LayoutError")]
    packet = collect_packet(ctx, "2026-0811", actor="user:aud", scope=OPERATOR_SCOPE, render=render_pdf)
    assert packet.rendered is not None and packet.rendered.startswith(b"%PDF")
    with ctx.db.read() as s:
        last = s.execute(select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1)).scalar_one()
        assert (last.action, last.outcome, last.seq) == ("case.packet", "ok", packet.audit_seq)
