"""Disclosure packets and transparency reports over a small real world: real photos enrolled and searched
through the real pipeline, reviews through the review service; outputs read back (PDF text with pypdf, CSV)
and compared with what the test computes itself from the records it made."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from index_helpers import create_gallery, enroll_photos
from pypdf import PdfReader
from sqlalchemy import select

from examination_helpers import DIFFERENT, NEUTRAL, SAME, conclude
from face_fixtures import BIDEN, FACEAPI, OBAMA, OBAMA2
from facetrail.audit.log import append_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.gallery.search import search_gallery
from facetrail.gallery.service import GalleryNotFoundError
from facetrail.policy.principal import Principal
from facetrail.reports.packet import OPERATOR_SCOPE, CaseNotFoundError, collect_packet, scope_for
from facetrail.reports.packet_pdf import write_packet_files
from facetrail.reports.transparency import collect_report, write_report
from facetrail.retention.deletion import delete_subject
from facetrail.storage.models import AuditRecord, SearchRecord
from factories import make_search, make_unit, make_user

CASE = "2026-0042"
OTHER_CASE = "2026-0099"
GALLERY = {"OBAMA": OBAMA, "BIDEN": BIDEN, "AMY": FACEAPI / "amy" / "amy1.png", "RAJ": FACEAPI / "raj" / "raj1.png"}


@dataclass
class World:
    users: dict[str, Principal]
    search_ids: dict[str, int]  # name -> search id


@pytest.fixture
def world(ctx: AppContext) -> World:
    ctx.settings.keep_probe_images = True
    ctx.settings.server.similarity_floor = -1.0  # every candidate shown, so that several can be reviewed
    robbery, homicide = make_unit(ctx, "Robbery"), make_unit(ctx, "Homicide")
    users = {
        "inv": make_user(ctx, "ivan.inv", "investigator", robbery, display_name="Ivan Investigator"),
        "rita": make_user(ctx, "rita.rev", "reviewer", robbery, display_name="Rita Reviewer"),
        "rob": make_user(ctx, "rob.rev", "reviewer", robbery, display_name="Rob Second-Reviewer"),
        "hank": make_user(ctx, "hank.inv", "investigator", homicide, display_name="Hank Homicide"),
        "aud": make_user(ctx, "ada.aud", "auditor", None, display_name="Ada Auditor"),
    }
    create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    create_gallery(ctx, "empty", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, 1, GALLERY)
    inv, hank = users["inv"], users["hank"]
    ids = {
        "mated": make_search(ctx, inv, OBAMA2, "bookings", CASE, "robbery"),
        "nothing": make_search(ctx, inv, OBAMA2, "empty", CASE, "robbery", legal_basis="court-order"),
        "other_unit": make_search(ctx, hank, OBAMA2, "bookings", CASE, "homicide"),
        "other_case": make_search(ctx, inv, OBAMA2, "bookings", OTHER_CASE, "fraud"),
    }
    mated, rita, rob = ids["mated"], users["rita"], users["rob"]
    # rita completes her examination (so her packet is not withheld from her); rob concludes ranks 1 and 2
    conclude(ctx, rita, mated, 1, SAME, "eyes and ears agree")
    conclude(ctx, rob, mated, 1, "moderate_support_same_source")
    conclude(ctx, rita, mated, 2, SAME)
    conclude(ctx, rob, mated, 2, NEUTRAL)
    conclude(ctx, rita, mated, 3, DIFFERENT, "no scar on the probe")
    conclude(ctx, rita, mated, 4, NEUTRAL)
    return World(users, ids)


def _without_images(value: Any) -> Any:
    """The packet's data without its base64 images (whose letters may spell anything, e.g. "AMY")."""
    if isinstance(value, dict):
        return {k: _without_images(v) for k, v in value.items() if not k.endswith("_base64")}
    if isinstance(value, list):
        return [_without_images(v) for v in value]
    return value


def _pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def _audit(ctx: AppContext, action: str) -> list[AuditRecord]:
    with ctx.db.read() as s:
        rows = list(
            s.execute(select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)).scalars()
        )
        for row in rows:
            s.expunge(row)
        return rows


# ------------------------------------------------------------------ disclosure packet


def test_packet_lists_every_search_candidate_and_reviewer_and_is_audited(
    ctx: AppContext, world: World, tmp_path: Path
) -> None:
    rita = world.users["rita"]
    packet = collect_packet(ctx, CASE, actor=rita.actor, scope=scope_for(rita), audit_context=rita.audit_context())
    pdf, js = write_packet_files(packet, tmp_path / "out" / "packet.pdf")
    assert js == tmp_path / "out" / "packet.json"
    data = json.loads(js.read_text())
    text = _pdf_text(pdf)

    # the reviewer's unit: both of its searches in the case, including the one that found nothing
    in_scope = [world.search_ids["mated"], world.search_ids["nothing"]]
    assert [s["search_id"] for s in data["searches"]] == in_scope
    assert CASE in text and "Disclosure packet" in text
    for search_id in in_scope:
        assert f"Search {search_id} " in text
    assert f"Search {world.search_ids['other_unit']} " not in text
    assert f"Search {world.search_ids['other_case']} " not in text

    mated = data["searches"][0]
    assert len(mated["candidates"]) == 4 and mated["candidates"][0]["subject_external_id"] == "OBAMA"
    assert "OBAMA" in text  # the released lead is named; nobody who was not released is (issue 8)
    for candidate in mated["candidates"][1:]:
        assert candidate["subject_external_id"] == "not released (identity withheld)"
        assert candidate["face_id"] is None and candidate["similarity"] is None
    for name in ("BIDEN", "AMY", "RAJ"):
        assert name not in text and name not in json.dumps(_without_images(data))
    assert "Rita Reviewer" in text and "rita.rev" in text and "Ivan Investigator" in text
    # blind verification: rita's own packet never names the other examiner of her search
    assert "rob.rev" not in text and "Rob Second-Reviewer" not in text and "another reviewer" in text
    assert mated["candidates"][0]["released"] and mated["candidates"][0]["possible_lead_votes"] == 2
    assert not any(c["released"] for c in mated["candidates"][1:])
    # every conclusion (final once recorded: there is no change of mind to list)
    history = [(h["reviewer"], h["rank"], h["decision"], h["previous_decision"]) for h in mated["review_history"]]
    assert history == [
        ("user:rita.rev", 1, SAME, None),
        ("another reviewer", 1, "moderate_support_same_source", None),
        ("user:rita.rev", 2, SAME, None),
        ("another reviewer", 2, NEUTRAL, None),
        ("user:rita.rev", 3, DIFFERENT, None),
        ("user:rita.rev", 4, NEUTRAL, None),
    ]
    assert "no scar on the probe" in text
    nothing = data["searches"][1]
    assert nothing["candidates"] == [] and nothing["outcome"].startswith("no candidate shown")
    assert nothing["legal_basis"] == "court-order"
    # the model and thresholds; hooks say plainly what is not recorded
    assert mated["model"]["model_id"] == ctx.pipeline.model_id and ctx.pipeline.model_id in text
    assert mated["model"]["decision_threshold"] is not None
    assert mated["approval"] is None and mated["emergency"] is None  # ran without needing approval
    assert mated["policy_version"] is None or mated["policy_version"].isdigit()
    # the probe image was kept: its aligned face is in the packet (a JPEG), and the PDF carries it
    thumb = base64.b64decode(mated["probe"]["thumbnail_jpeg_base64"])
    assert thumb[:3] == b"\xff\xd8\xff"
    # one probe face per search, and the released lead's report shows the probe and the candidate (issue 15)
    assert len(data["lead_reports"]) == 1
    assert sum(len(page.images) for page in PdfReader(pdf).pages) == 2 + 2
    assert "page 1 of" in text
    assert data["audit_chain"]["ok"] and "intact" in text

    [record] = _audit(ctx, "case.packet")
    details = json.loads(record.details)
    assert record.seq == data["audit_seq"] and record.actor == "user:rita.rev" and record.outcome == "ok"
    assert details["search_ids"] == in_scope and details["review_decisions"] == 6


def test_auditor_packet_covers_every_unit_without_probe_faces(ctx: AppContext, world: World, tmp_path: Path) -> None:
    aud = world.users["aud"]
    packet = collect_packet(ctx, CASE, actor=aud.actor, scope=scope_for(aud))
    pdf, _ = write_packet_files(packet, tmp_path / "aud.pdf")
    ids = [s["search_id"] for s in packet.data["searches"]]
    assert ids == sorted([world.search_ids["mated"], world.search_ids["nothing"], world.search_ids["other_unit"]])
    assert all(s["probe"]["thumbnail_jpeg_base64"] is None for s in packet.data["searches"])
    text = _pdf_text(pdf)
    assert "Hank Homicide" in text and world.users["hank"].unit_name == "Homicide"
    assert sum(len(page.images) for page in PdfReader(pdf).pages) == 0
    for search in packet.data["searches"]:
        assert search["probe"]["sha256"] in text.replace("\n", "")


def test_refused_attempts_of_the_case_are_listed(ctx: AppContext, world: World) -> None:
    with pytest.raises(GalleryNotFoundError):
        search_gallery(
            ctx,
            OBAMA2,
            gallery="no-such-gallery",
            case_number=CASE,
            offense="robbery",
            reason="typo in the gallery name",
            actor=world.users["inv"].actor,
        )
    packet = collect_packet(ctx, CASE, actor="cli:operator", scope=OPERATOR_SCOPE)
    [attempt] = packet.data["refused_attempts"]
    assert attempt["gallery"] == "no-such-gallery" and attempt["actor"] == "user:ivan.inv"
    assert packet.data["summary"]["refused_attempts"] == 1


def test_a_case_without_searches_is_a_clear_audited_error(ctx: AppContext, world: World) -> None:
    rita = world.users["rita"]
    with pytest.raises(CaseNotFoundError, match="no search is recorded for case 'NO-SUCH-CASE'"):
        collect_packet(ctx, "NO-SUCH-CASE", actor=rita.actor, scope=scope_for(rita))
    aud = world.users["aud"]
    with pytest.raises(BadInputError, match="case number"):
        collect_packet(ctx, "  ", actor=aud.actor, scope=scope_for(aud))  # blank: bad input, not a case
    refusals = [r for r in _audit(ctx, "case.packet") if r.outcome == "not_found"]
    assert [r.target for r in refusals] == ["case:NO-SUCH-CASE"]


# ------------------------------------------------------------------ transparency report


def _csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_transparency_report_counts_match_the_world(ctx: AppContext, world: World, tmp_path: Path) -> None:
    # one search long before the period: it must not be counted
    with ctx.db.transaction() as s:
        old = s.get(SearchRecord, world.search_ids["other_case"])
        assert old is not None
        old.created_at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    # what the gallery saw: the enrolment of the four photos (as the enrolment service records it), then one
    # subject deleted through the gallery service
    with ctx.db.transaction() as s:
        append_audit(
            s,
            actor="t",
            action="enroll.batch",
            target="gallery:bookings",
            details={"gallery_id": 1, "enrolled": len(GALLERY), "face_ids": [1, 2, 3, 4]},
        )
    delete_subject(ctx, "bookings", "RAJ", actor="t", reason="expunged")

    today = dt.datetime.now(dt.UTC).date()
    report = collect_report(ctx, str(today - dt.timedelta(days=1)), str(today), actor="cli:clerk")
    files = write_report(report, tmp_path / "report")
    out = tmp_path / "report"
    assert {p.name for p in files} >= {"index.html", "searches_by_unit.csv", "search_outcomes.png"}

    # counted independently from what the fixture did: ivan ran 2 searches in the period (Robbery), hank 1
    # (Homicide); the fourth search is outside the period
    assert sorted(_csv(out / "searches_by_unit.csv")[1:]) == [["Homicide", "1"], ["Robbery", "2"]]
    assert sorted(_csv(out / "searches_by_offense.csv")[1:]) == [["homicide", "1"], ["robbery", "2"]]
    assert sorted(_csv(out / "searches_by_legal_basis.csv")[1:]) == [["court-order", "1"], ["warrant", "2"]]
    outcomes = dict(_csv(out / "search_outcomes.csv")[1:])
    assert outcomes == {
        "released lead": "1",
        "possible lead, not released": "0",
        "reviewed, no lead": "0",
        "not reviewed": "1",
        "no candidate shown": "1",
    }
    # ranks 1 and 2 had two reviewers; both at the release level on rank 1, only one on rank 2
    assert _csv(out / "reviewer_disagreements.csv")[1:] == [["Robbery", "2", "1"]]
    assert _csv(out / "gallery_changes.csv")[1:] == [["bookings", "4", "1", "1"]]
    users = {row[0]: row[1:] for row in _csv(out / "users.csv")[1:]}
    assert users == {
        "investigator": ["2", "2", "2", "0"],
        "reviewer": ["2", "2", "0", "0"],
        "auditor": ["1", "0", "0", "0"],
    }  # nobody's search training recorded in this world
    [model] = _csv(out / "model.csv")[1:]
    assert model[:3] == [ctx.pipeline.model_id, "yes", "3"]
    assert _csv(out / "audit_chain.csv")[1][0] == "True"
    assert report.section("approvals").recorded is True and report.section("approvals").rows == []

    page = (out / "index.html").read_text()
    assert "<script" not in page.lower()
    for sec in report.sections:
        if sec.chart is not None:
            assert f'src="{sec.key}.png"' in page and (out / f"{sec.key}.png").read_bytes()[:4] == b"\x89PNG"
    # no personal data of enrolled subjects or probes, and no case numbers
    everything = "\n".join(p.read_text() for p in out.glob("*") if p.suffix in (".html", ".csv"))
    for secret in ["OBAMA", "BIDEN", "Rita Reviewer", "ivan.inv", CASE, OTHER_CASE, "obama2.jpg"]:
        assert secret not in everything
    with ctx.db.read() as s:
        probe_hashes = set(s.execute(select(SearchRecord.probe_sha256)).scalars())
    assert not any(h in everything for h in probe_hashes)

    [record] = _audit(ctx, "report.transparency")
    assert record.seq == report.audit_seq and record.actor == "cli:clerk"
    assert json.loads(record.details)["totals"]["searches_by_unit"] == 3


def test_report_period_is_checked(ctx: AppContext) -> None:
    with pytest.raises(BadInputError, match="before it starts"):
        collect_report(ctx, "2026-02-01", "2026-01-01", actor="t")
    with pytest.raises(BadInputError, match="YYYY-MM-DD"):
        collect_report(ctx, "last year", "2026-01-01", actor="t")


# ------------------------------------------------------------------ over HTTP


def test_api_serves_packets_and_reports_to_the_right_roles_only(ctx: AppContext, world: World) -> None:
    from fastapi.testclient import TestClient

    from facetrail.accounts.service import create_api_token
    from facetrail.service.app import create_app

    client = TestClient(create_app(ctx))

    def auth(name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {create_api_token(ctx, world.users[name], 'test', scope='full')[1]}"}

    r = client.get(f"/api/v1/cases/{CASE}/packet", headers=auth("rita"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(r.content)).pages)
    assert CASE in text and f"Search {world.search_ids['mated']} " in text
    r = client.get(f"/api/v1/cases/{CASE}/packet", params={"format": "json"}, headers=auth("aud"))
    assert r.status_code == 200 and len(r.json()["searches"]) == 3
    assert client.get(f"/api/v1/cases/{CASE}/packet", headers=auth("inv")).status_code == 403
    assert client.get("/api/v1/cases/NOPE/packet", headers=auth("rita")).status_code == 404

    period = {"from": "2020-01-01", "to": "2029-12-31"}  # every search of the world
    r = client.get("/api/v1/reports/transparency", params=period, headers=auth("aud"))
    assert r.status_code == 200 and "Searches by unit" in r.text and "<script" not in r.text
    assert 'src="data:image/png;base64,' in r.text
    r = client.get(
        "/api/v1/reports/transparency",
        params={**period, "format": "csv", "table": "searches_by_unit"},
        headers=auth("aud"),
    )
    assert sorted(list(csv.reader(io.StringIO(r.text)))[1:]) == [["Homicide", "1"], ["Robbery", "3"]]
    for name in ("inv", "rita"):
        assert client.get("/api/v1/reports/transparency", params=period, headers=auth(name)).status_code == 403
    denied = [r for r in _audit(ctx, "access.denied") if r.outcome == "denied"]
    assert len(denied) == 3


def test_cli_packet_runs_as_a_signed_in_user_with_that_users_scope(
    ctx: AppContext, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from facetrail.accounts.service import create_api_token
    from facetrail.cli.main import app
    from facetrail.config import get_settings

    monkeypatch.setenv("FACETRAIL_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("FACETRAIL_DATABASE_URL", ctx.settings.resolved_database_url)
    get_settings.cache_clear()
    runner = CliRunner()
    out = tmp_path / "packet.pdf"
    try:
        anonymous = runner.invoke(app, ["case", "packet", CASE, "--out", str(out), "--json"])
        assert anonymous.exit_code == 6 and json.loads(anonymous.output)["error"]["code"] == "unauthenticated"
        inv = runner.invoke(
            app,
            [
                "case",
                "packet",
                CASE,
                "--out",
                str(out),
                "--json",
                "--token",
                create_api_token(ctx, world.users["inv"], "t", scope="full")[1],
            ],
        )
        assert inv.exit_code == 6 and json.loads(inv.output)["error"]["code"] == "forbidden"
        assert not out.exists()
        aud = runner.invoke(
            app,
            [
                "case",
                "packet",
                CASE,
                "--out",
                str(out),
                "--json",
                "--token",
                create_api_token(ctx, world.users["aud"], "t", scope="full")[1],
            ],
        )
        assert aud.exit_code == 0, aud.output
    finally:
        get_settings.cache_clear()
    assert CASE in _pdf_text(out)
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["generated_by"] == world.users["aud"].actor
    assert all(not e["probe"]["thumbnail_jpeg_base64"] for e in data["searches"])  # auditors: hashes only
