"""Enhancement without altering evidence, the probe declaration and the investigative lead report, on a real
database (SQLite and PostgreSQL) with real photos searched through the real pipeline and examined through the
real examination service: who may enhance, the log, replay to the identical hash, the original untouched,
derived images removed with their originals; the policy refusing edited probes and sketches; the lead report's
text read back from the PDF (pypdf), alone and inside the disclosure packet; the transparency figures."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from typing import Any

import pytest
from index_helpers import create_gallery, enroll_photos
from pypdf import PdfReader
from sqlalchemy import select, update

from face_fixtures import BIDEN, FACEAPI, OBAMA, OBAMA2
from facetrail.cases import enhancements
from facetrail.cases import examinations as exams
from facetrail.cases.searches import run_search
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError
from facetrail.examination import fiswg
from facetrail.examination.enhanced_images import ImageEnhancement, enhanced_store
from facetrail.examination.models import ExaminationTask, ExaminedCandidate
from facetrail.gallery.search import probe_store
from facetrail.gallery.service import image_store
from facetrail.governance.policy import apply_policy, default_policy_text
from facetrail.governance.training import record_training
from facetrail.policy.principal import Principal
from facetrail.reports.leads import make_lead_report
from facetrail.reports.packet import collect_packet, scope_for
from facetrail.reports.packet_pdf import render_pdf
from facetrail.reports.transparency import collect_report
from facetrail.retention.run import run_retention
from facetrail.storage.models import Face, SearchRecord
from factories import audits, make_search, make_unit, make_user, search_request

GALLERY = {"OBAMA": OBAMA, "BIDEN": BIDEN, "AMY": FACEAPI / "amy" / "amy1.png"}
PURPOSE = "lift the shadow over the eyes"
CASE = "2026-0042"
QUALITY = {factor: {"rating": "good", "comment": ""} for factor in fiswg.QUALITY_FACTORS}


@dataclass
class World:
    ctx: AppContext
    users: dict[str, Principal]
    search_id: int
    tasks: dict[str, str]  # reviewer -> their task's public id


@pytest.fixture
def world(ctx: AppContext) -> World:
    ctx.settings.keep_probe_images = True
    ctx.settings.server.similarity_floor = -1.0
    robbery, homicide = make_unit(ctx, "Robbery"), make_unit(ctx, "Homicide")
    users = {
        "inv": make_user(ctx, "ivan.inv", "investigator", robbery),
        "rita": make_user(ctx, "rita.rev", "reviewer", robbery, display_name="Rita Reviewer"),
        "rob": make_user(ctx, "rob.rev", "reviewer", robbery, display_name="Rob Reviewer"),
        "hugo": make_user(ctx, "hugo.rev", "reviewer", homicide),
        "aud": make_user(ctx, "ada.aud", "auditor", None),
        "admin": make_user(ctx, "adam.admin", "administrator", None),
    }
    create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, 1, GALLERY)
    store = image_store(ctx)
    with ctx.db.transaction() as s:  # keep the enrolled originals, as an enrolment with keep_images does
        for face in s.execute(select(Face)).scalars():
            store.put(face.image_sha256, GALLERY[face.subject.external_id].read_bytes())
            face.image_stored = True
    search_id = make_search(ctx, users["inv"], OBAMA2, "bookings", CASE, "robbery")
    tasks = {}
    for name in ("rita", "rob"):
        exams.queue(ctx, users[name])  # the system assigns the two examiners
        with ctx.db.read() as s:
            tasks[name] = s.execute(
                select(ExaminationTask.public_id).where(
                    ExaminationTask.search_id == search_id, ExaminationTask.reviewer_id == users[name].user_id
                )
            ).scalar_one()
    return World(ctx, users, search_id, tasks)


def _analyse(w: World, who: str) -> None:
    exams.record_probe_analysis(w.ctx, w.users[who], w.tasks[who], QUALITY, True, "")


def _handle(w: World, who: str, subject: str = "OBAMA") -> str:
    with w.ctx.db.read() as s:
        face_id = s.execute(
            select(Face.id).where(Face.image_sha256 == hashlib.sha256(GALLERY[subject].read_bytes()).hexdigest())
        ).scalar_one()
        return str(
            s.execute(
                select(ExaminedCandidate.handle)
                .join(ExaminationTask, ExaminationTask.id == ExaminedCandidate.task_id)
                .where(ExaminationTask.public_id == w.tasks[who], ExaminedCandidate.face_id == face_id)
            ).scalar_one()
        )


def _enhance(w: World, who: str = "rita", **fields: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "image": "probe",
        "operation": "brightness",
        "parameters": {"delta": 30},
        "purpose": PURPOSE,
    } | fields
    return enhancements.enhance_image(w.ctx, w.users[who], w.tasks.get(who, "no-such-task-0"), **args)


def _probe_sha(w: World) -> str:
    with w.ctx.db.read() as s:
        record = s.get(SearchRecord, w.search_id)
        assert record is not None
        return record.probe_sha256


def test_an_examiner_enhances_a_copy_logged_and_replayable_to_the_same_hash(world: World) -> None:
    ctx, rita = world.ctx, world.users["rita"]
    probe_sha = _probe_sha(world)
    original = probe_store(ctx).get(probe_sha)
    first = _enhance(world)
    crop = {"x": 4, "y": 4, "width": 60, "height": 60}
    second = _enhance(world, parent_sha256=first["sha256"], operation="crop", parameters=crop)
    _analyse(world, "rita")
    handle = _handle(world, "rita")
    cand = _enhance(world, image="candidate", candidate=handle, operation="gamma", parameters={"gamma": 1.4})

    # the original is untouched, still under its hash; the derived images carry their parent's hash
    assert probe_store(ctx).get(probe_sha) == original
    assert first["original_sha256"] == first["parent_sha256"] == probe_sha
    assert second["parent_sha256"] == first["sha256"] and second["step"] == 2
    assert second["steps"] == [
        {"operation": "brightness", "parameters": {"delta": 30}},
        {"operation": "crop", "parameters": crop},
    ]
    assert all(e["enhanced"] for e in (first, second, cand))
    assert cand["original_sha256"] == hashlib.sha256(OBAMA.read_bytes()).hexdigest() and cand["candidate"] == handle
    for entry in (first, second, cand):  # nothing that would unmask a candidate
        assert not {"rank", "similarity", "face_id", "subject_external_id", "search_id"} & set(entry)

    # the stored image is what its hash says, and replay from original + log gives the identical hash
    png = enhancements.enhanced_image(ctx, rita, world.tasks["rita"], second["sha256"])
    assert hashlib.sha256(png).hexdigest() == second["sha256"] and png.startswith(b"\x89PNG")
    for entry in (first, second, cand):
        replay = enhancements.replay(ctx, rita, world.tasks["rita"], entry["sha256"])
        assert replay["identical"] and replay["pixels_identical"]
        assert replay["replayed_sha256"] == entry["sha256"]

    # every step logged: operation, parameters, user, time, purpose
    log = enhancements.enhancement_log(ctx, rita, world.tasks["rita"])
    assert [(e["operation"], e["user"], e["purpose"]) for e in log] == [
        ("brightness", "rita.rev", PURPOSE),
        ("crop", "rita.rev", PURPOSE),
        ("gamma", "rita.rev", PURPOSE),
    ]
    assert all(isinstance(e["created_at"], dt.datetime) for e in log)
    created = audits(ctx, "enhancement.create", "ok")
    assert [r["result_sha256"] for r in created] == [first["sha256"], second["sha256"], cand["sha256"]]
    assert all("face_id" not in r for r in created)  # the audit log names no candidate
    assert len(audits(ctx, "enhancement.replay", "ok")) == 3
    # the other examiner's log is theirs: they do not see rita's work (blind verification)
    assert enhancements.enhancement_log(ctx, world.users["rob"], world.tasks["rob"]) == []


def test_only_the_examiner_of_the_task_may_enhance_and_every_refusal_is_audited(world: World) -> None:
    task = world.tasks["rita"]
    for who, code, outcome in (
        ("inv", "forbidden", "denied"),  # an investigator cannot enhance (nor their own search)
        ("admin", "forbidden", "denied"),
        ("aud", "forbidden", "denied"),
        ("rob", "examination_not_found", "not_found"),  # the other examiner: not their task
        ("hugo", "examination_not_found", "not_found"),  # a reviewer of another unit
    ):
        with pytest.raises(FaceTrailError) as err:
            enhancements.enhance_image(
                world.ctx,
                world.users[who],
                task,
                image="probe",
                operation="gamma",
                parameters={"gamma": 2},
                purpose=PURPOSE,
            )
        assert err.value.code == code, who
        assert audits(world.ctx, "enhancement.create", outcome)[-1]["actor"] == f"user:{world.users[who].username}"
    # candidates only after the probe analysis (sequential unmasking)
    with pytest.raises(FaceTrailError) as err:
        _enhance(world, image="candidate", candidate="whatever")
    assert err.value.code == "probe_analysis_required"
    assert not audits(world.ctx, "enhancement.create", "ok")


def test_auditors_read_a_searchs_log_but_never_the_images(world: World) -> None:
    entry = _enhance(world)
    log = enhancements.audit_log(world.ctx, world.users["aud"], world.search_id)
    assert [e["sha256"] for e in log] == [entry["sha256"]] and log[0]["image_url"] is None
    with pytest.raises(FaceTrailError):
        enhancements.audit_log(world.ctx, world.users["rita"], world.search_id)
    with pytest.raises(FaceTrailError):
        enhancements.enhanced_image(world.ctx, world.users["aud"], world.tasks["rita"], entry["sha256"])


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"operation": "upscale"}, "enhancement_invalid"),
        ({"operation": "inpaint", "parameters": {}}, "enhancement_invalid"),
        ({"parameters": {"delta": 500}}, "enhancement_invalid"),
        ({"purpose": ""}, "bad_input"),
        ({"parent_sha256": "0" * 64}, "enhancement_not_found"),
    ],
)
def test_bad_enhancements_are_refused_and_audited(world: World, fields: dict[str, Any], code: str) -> None:
    with pytest.raises(FaceTrailError) as err:
        _enhance(world, **fields)
    assert err.value.code == code
    assert audits(world.ctx, "enhancement.create", "refused")[-1]["error"]["code"] == code


def test_a_swapped_original_is_detected_not_enhanced(world: World) -> None:
    """An insider who replaces the stored probe file cannot pass another image off under the probe's hash."""
    ctx, sha = world.ctx, _probe_sha(world)
    first = _enhance(world)
    store = probe_store(ctx)
    store.remove(sha)
    store.put(sha, BIDEN.read_bytes())  # a different face under the probe's hash
    with pytest.raises(FaceTrailError) as err:
        _enhance(world)
    assert err.value.code == "original_altered"
    with pytest.raises(FaceTrailError) as err:
        enhancements.replay(ctx, world.users["rita"], world.tasks["rita"], first["sha256"])
    assert err.value.code == "original_altered"
    assert audits(ctx, "enhancement.replay", "refused")[-1]["error"]["code"] == "original_altered"


def test_a_tampered_log_does_not_replay_to_the_logged_image(world: World) -> None:
    """An insider who edits the log row (to claim a milder enhancement) is caught by replay."""
    entry = _enhance(world, parameters={"delta": 90})
    with world.ctx.db.transaction() as s:
        s.execute(
            update(ImageEnhancement)
            .where(ImageEnhancement.id == entry["id"])
            .values(steps=[{"operation": "brightness", "parameters": {"delta": 5}}], parameters={"delta": 5})
        )
    replay = enhancements.replay(world.ctx, world.users["rita"], world.tasks["rita"], entry["sha256"])
    assert not replay["identical"] and not replay["pixels_identical"]
    failed = audits(world.ctx, "enhancement.replay", "failed")
    assert failed and failed[-1]["sha256"] == entry["sha256"]
    # the audit record written at creation still holds the parameters really used
    assert audits(world.ctx, "enhancement.create", "ok")[-1]["parameters"] == {"delta": 90}


def test_derived_images_go_with_the_probe_under_retention(world: World) -> None:
    ctx = world.ctx
    entry = _enhance(world)
    _analyse(world, "rita")
    cand = _enhance(world, image="candidate", candidate=_handle(world, "rita"))
    store = enhanced_store(ctx)
    assert store.exists(entry["sha256"])
    with ctx.db.transaction() as s:  # the probe is past its retention period
        s.execute(
            update(SearchRecord)
            .where(SearchRecord.id == world.search_id)
            .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
        )
    report = run_retention(ctx, dry_run=False, actor="system:retention")
    assert [a.status for a in report.actions if a.kind == "probe"] == ["deleted"]
    assert not store.exists(entry["sha256"])
    assert store.exists(cand["sha256"])  # the candidate's original is still kept: so is its copy
    certificate = [c for c in audits(ctx, "deletion.certificate") if c["scope"] == "probes"][-1]
    assert certificate["derived_images_removed"] == [entry["sha256"]]
    with ctx.db.read() as s:
        kept = {r.result_sha256: r.image_stored for r in s.execute(select(ImageEnhancement)).scalars()}
    assert kept == {entry["sha256"]: False, cand["sha256"]: True}  # the log stays, the image is gone
    with pytest.raises(FaceTrailError):
        enhancements.enhanced_image(ctx, world.users["rita"], world.tasks["rita"], entry["sha256"])


# ------------------------------------------------------------------ the lead report


def _examine(w: World, who: str, conclusion: str, *, enhance: bool = False) -> None:
    _analyse(w, who)
    handle = _handle(w, who)
    if enhance:
        _enhance(w, who)
        _enhance(w, who, image="candidate", candidate=handle, operation="contrast", parameters={"factor": 1.3})
    marks: dict[str, dict[str, dict[str, str]]] = {
        component: {c: {"mark": "similar", "comment": ""} for c in chars}
        for component, (_label, chars) in fiswg.COMPONENTS.items()
    }
    marks["hair"]["style"] = {"mark": "dissimilar", "comment": "shorter hair: seven years between the photos"}
    exams.save_checklist(w.ctx, w.users[who], w.tasks[who], handle, marks)
    exams.record_conclusion(
        w.ctx, w.users[who], w.tasks[who], handle, conclusion, f"{who}: ears and nose agree", "low-resolution probe"
    )


def _text(pdf: bytes) -> str:
    return " ".join(" ".join((page.extract_text() or "").split()) for page in PdfReader(io.BytesIO(pdf)).pages)


def test_the_lead_report_of_a_released_lead(world: World) -> None:
    ctx, rita, aud = world.ctx, world.users["rita"], world.users["aud"]
    with pytest.raises(FaceTrailError) as err:  # not released yet
        make_lead_report(ctx, rita, world.search_id, 1)
    assert err.value.code == "lead_not_released"
    _examine(world, "rita", "strong_support_same_source", enhance=True)
    _examine(world, "rob", "moderate_support_same_source")
    with ctx.db.read() as s:
        record = s.get(SearchRecord, world.search_id)
        assert record is not None
        rank = next(int(c["rank"]) for c in record.candidates if c["subject_external_id"] == "OBAMA")

    with pytest.raises(FaceTrailError) as err:  # rita's task is still open: the report carries the case story
        make_lead_report(ctx, rita, world.search_id, rank)
    assert err.value.code == "lead_not_released"
    assert collect_packet(ctx, CASE, actor=rita.actor, scope=scope_for(rita)).data["lead_reports"] == []
    for c in exams.list_candidates(ctx, rita, world.tasks["rita"]):  # rita completes her examination
        if c["conclusion"] is None:
            exams.open_candidate(ctx, rita, world.tasks["rita"], c["handle"])
            exams.record_conclusion(ctx, rita, world.tasks["rita"], c["handle"], "not_suitable", "blurred", "none")
    text = _text(make_lead_report(ctx, rita, world.search_id, rank))
    assert "INVESTIGATIVE LEAD ONLY — NOT A POSITIVE IDENTIFICATION" in text
    assert "Investigative lead report — case" in text and "Disclosure packet" not in text  # the page footer
    assert "What must still be corroborated" in text
    assert _probe_sha(world) in text and hashlib.sha256(OBAMA.read_bytes()).hexdigest() in text
    assert "Strong support for same source" in text and "Moderate support for same source" in text
    assert "rita: ears and nose agree" in text and "low-resolution probe" in text
    assert "shorter hair: seven years between the photos" in text  # the difference, explained
    assert "ENHANCED probe" in text and "ENHANCED candidate" in text and PURPOSE in text
    for entry in enhancements.search_log(ctx, world.search_id):
        assert entry["sha256"] in text
    assert "Probe declared as original" in text
    record_ = audits(ctx, "lead.report", "ok")[-1]
    assert record_["search_id"] == world.search_id and len(record_["sha256"]) == 64

    # auditors: the same report, hashes only
    assert "hashes only" in _text(make_lead_report(ctx, aud, world.search_id, rank))
    # another unit's reviewer: "not found"; an investigator: no packet permission
    for who, code in (("hugo", "search_not_found"), ("inv", "forbidden")):
        with pytest.raises(FaceTrailError) as err:
            make_lead_report(ctx, world.users[who], world.search_id, rank)
        assert err.value.code == code

    # the case's disclosure packet carries the lead report (here the auditor's; an examiner whose task is still
    # open is told nothing of the search in a packet: sequential unmasking, checked above)
    packet = collect_packet(ctx, CASE, actor=aud.actor, scope=scope_for(aud), render=render_pdf)
    assert packet.data["summary"]["lead_reports"] == 1
    assert packet.rendered is not None
    packet_text = _text(packet.rendered)
    assert "Investigative lead report" in packet_text and "NOT A POSITIVE IDENTIFICATION" in packet_text
    assert "What must still be corroborated" in packet_text and _probe_sha(world) in packet_text
    mine = collect_packet(ctx, CASE, actor=rita.actor, scope=scope_for(rita))  # her examination is complete
    assert len(mine.data["lead_reports"]) == 1


def test_the_lead_report_from_the_command_line(world: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from facetrail.accounts.service import create_api_token
    from facetrail.cli.main import app as cli_app
    from facetrail.config import get_settings

    ctx = world.ctx
    _examine(world, "rita", "strong_support_same_source")
    _examine(world, "rob", "strong_support_same_source")
    with ctx.db.read() as s:
        record = s.get(SearchRecord, world.search_id)
        assert record is not None
        rank = next(int(c["rank"]) for c in record.candidates if c["subject_external_id"] == "OBAMA")
    token = create_api_token(ctx, world.users["aud"], "test", scope="read")[1]
    monkeypatch.setenv("FACETRAIL_DATABASE_URL", ctx.settings.resolved_database_url)
    monkeypatch.setenv("FACETRAIL_DATA_DIR", str(ctx.data_dir))
    get_settings.cache_clear()
    try:
        out = tmp_path / "lead.pdf"
        args = ["case", "lead", str(world.search_id), str(rank), "--out", str(out), "--token", token, "--json"]
        result = CliRunner().invoke(cli_app, args)
        assert result.exit_code == 0, result.output
        assert hashlib.sha256(out.read_bytes()).hexdigest() in result.output
        assert "NOT A POSITIVE IDENTIFICATION" in _text(out.read_bytes())
        refused = CliRunner().invoke(cli_app, [*args[:2], str(world.search_id), str(rank + 50), *args[4:]])
        assert refused.exit_code != 0
    finally:
        get_settings.cache_clear()
    assert audits(ctx, "lead.report", "ok")[-1]["actor"] == "user:ada.aud"
    assert audits(ctx, "lead.report", "refused")[-1]["error"]["code"] == "lead_not_released"


def test_transparency_counts_disagreement_neutral_and_not_suitable(world: World) -> None:
    ctx = world.ctx
    _examine(world, "rita", "strong_support_same_source")
    _examine(world, "rob", "neutral")
    today = dt.date.today().isoformat()
    report = collect_report(ctx, today, today, actor="user:ada.aud")
    rows = report.section("examination_rates").rows
    assert len(rows) == 1
    unit, conclusions, neutral, _nr, not_suitable, _nsr, pairs, disagreements, rate = rows[0][:9]
    assert (unit, conclusions, neutral, not_suitable, pairs, disagreements, rate) == (
        "Robbery",
        2,
        1,
        0,
        1,
        1,
        "100.0%",
    )
    assert report.section("searches_without_lead").rows == [[1, 1, "100.0%"]]


# ------------------------------------------------------------------ probe declaration


def _trained(ctx: AppContext, username: str) -> None:
    record_training(ctx, username, dt.date.today() - dt.timedelta(days=5), "FR-101", actor="user:adam.admin")


def test_edited_probes_and_sketches_are_refused_by_the_default_policy_and_audited(world: World) -> None:
    ctx, inv = world.ctx, world.users["inv"]
    _trained(ctx, "ivan.inv")
    for declaration in ("edited", "composite_sketch"):
        with pytest.raises(FaceTrailError) as err:
            run_search(ctx, inv, OBAMA2.read_bytes(), search_request(probe_declaration=declaration))
        assert err.value.code == "probe_declaration_refused"
        refused = audits(ctx, "search", "refused")[-1]
        assert refused["error"]["code"] == "probe_declaration_refused" and refused["probe_sha256"] is None
    with pytest.raises(FaceTrailError) as err:
        run_search(ctx, inv, OBAMA2.read_bytes(), search_request(probe_declaration="photoshopped"))
    assert err.value.code == "bad_input"
    view = run_search(ctx, inv, OBAMA2.read_bytes(), search_request())
    assert view.probe_declaration == "original"
    assert audits(ctx, "search", "ok")[-1]["probe_declaration"] == "original"


def test_a_policy_that_accepts_sketches_records_the_declaration(world: World) -> None:
    ctx, inv = world.ctx, world.users["inv"]
    _trained(ctx, "ivan.inv")
    text = default_policy_text().replace('accepted = ["original"]', 'accepted = ["original", "composite_sketch"]')
    apply_policy(ctx, text, actor="user:adam.admin")
    view = run_search(ctx, inv, OBAMA2.read_bytes(), search_request(probe_declaration="composite_sketch"))
    assert view.probe_declaration == "composite_sketch"
    with ctx.db.read() as s:
        assert s.get(SearchRecord, view.search_id).probe_declaration == "composite_sketch"  # type: ignore[union-attr]
    assert audits(ctx, "search", "ok")[-1]["probe_declaration"] == "composite_sketch"
    with pytest.raises(FaceTrailError) as err:  # still not an edited one
        run_search(ctx, inv, OBAMA2.read_bytes(), search_request(probe_declaration="edited"))
    assert err.value.code == "probe_declaration_refused"


def test_the_declaration_is_shown_to_the_examiner_only_after_the_probe_analysis(world: World) -> None:
    ctx, rita = world.ctx, world.users["rita"]
    with ctx.db.transaction() as s:
        s.execute(update(SearchRecord).where(SearchRecord.id == world.search_id).values(probe_declaration="edited"))
    assert exams.get_task(ctx, rita, world.tasks["rita"])["probe_declaration"] is None
    _analyse(world, "rita")
    assert exams.get_task(ctx, rita, world.tasks["rita"])["probe_declaration"] == "edited"


def test_derived_images_go_with_a_deleted_subject_and_the_certificate_says_so(world: World) -> None:
    from facetrail.retention.deletion import delete_subject

    ctx = world.ctx
    _analyse(world, "rita")
    cand = _enhance(world, image="candidate", candidate=_handle(world, "rita"))
    probe = _enhance(world)
    delete_subject(ctx, "bookings", "OBAMA", actor="user:adam.admin", reason="expunged")
    store = enhanced_store(ctx)
    assert not store.exists(cand["sha256"]) and store.exists(probe["sha256"])
    certificate = [c for c in audits(ctx, "deletion.certificate") if c["scope"] == "subject"][-1]
    assert certificate["derived_images_removed"] == [cand["sha256"]]
    assert certificate["counts"]["derived_images_removed"] == 1
