"""Oversight (issue 14) against a real gallery, real photos through the real pipeline, on SQLite and PostgreSQL:
limits, case verification (allow-list and a records system over real HTTP), anomaly alerts, the audit sample
recomputed from the chain by the script of docs/oversight.md, and e-mail through a real SMTP server (aiosmtpd).

Simulated time: the oversight clock (ctx.extras['clock']) and the searches' created_at follow one injected
clock; the audit log keeps real time.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from index_helpers import create_gallery, enroll_photos
from sqlalchemy import delete, event

from face_fixtures import BIDEN, FACEAPI, OBAMA, OBAMA2
from facetrail.audit.export import export_audit
from facetrail.audit.service import take_checkpoint
from facetrail.cases import hooks
from facetrail.cases.probe import SearchRequest
from facetrail.cases.searches import run_search
from facetrail.context import AppContext
from facetrail.errors import FaceTrailError, PermissionDeniedError
from facetrail.governance.policy import apply_policy, default_policy_text
from facetrail.governance.training import record_training
from facetrail.oversight import alerts, cases, notify, sampling
from facetrail.oversight.guard import install
from facetrail.oversight.models import Alert, Notification
from facetrail.policy.principal import Principal
from facetrail.reports.transparency import collect_report
from facetrail.storage.models import SearchRecord
from factories import audits, make_unit, make_user

ROOT = Path(__file__).resolve().parents[2]
GALLERY = {"OBAMA": OBAMA, "BIDEN": BIDEN, "AMY": FACEAPI / "amy" / "amy1.png"}
PROBE = OBAMA2.read_bytes()
START = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)  # a Monday


@dataclass
class World:
    ctx: AppContext
    users: dict[str, Principal]
    clock: list[dt.datetime]

    def search(self, who: str, case: str, *, offense: str = "robbery", justification: str = "") -> Any:
        req = SearchRequest(
            gallery="bookings",
            case_number=case,
            offense=offense,
            legal_basis="warrant",
            justification=justification or f"CCTV still for case {case}",
            candidates=3,
        )
        return run_search(self.ctx, self.users[who], PROBE, req)

    def policy(self, **sections: str) -> None:
        text = default_policy_text()
        for header, body in sections.items():
            text = re.sub(rf"\[{header}\]\n(?:(?!\n\[).)*", f"[{header}]\n{body}\n", text, flags=re.S)
        apply_policy(self.ctx, text, actor="cli:test")


@pytest.fixture
def world(ctx: AppContext) -> Iterator[World]:
    install()
    robbery, homicide = make_unit(ctx, "Robbery"), make_unit(ctx, "Homicide")
    users = {
        "ivan": make_user(ctx, "ivan.inv", "investigator", robbery),
        "paula": make_user(ctx, "paula.inv", "investigator", robbery),
        "pete": make_user(ctx, "pete.inv", "investigator", robbery),
        "rita": make_user(ctx, "rita.rev", "reviewer", robbery),
        "hank": make_user(ctx, "hank.rev", "reviewer", homicide),
        "admin": make_user(ctx, "adam.admin", "administrator", None),
        "aud": make_user(ctx, "ada.aud", "auditor", None),
    }
    gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, gallery_id, GALLERY)
    for name in ("ivan.inv", "paula.inv", "pete.inv"):
        record_training(ctx, name, START.date() - dt.timedelta(days=10), "FR-101", actor="user:adam.admin")
    clock = [START]
    ctx.extras["clock"] = lambda: clock[0]

    def stamp(_mapper: Any, _connection: Any, target: SearchRecord) -> None:
        target.created_at = clock[0]

    event.listen(SearchRecord, "before_insert", stamp)
    cases.clear_cache()
    try:
        yield World(ctx, users, clock)
    finally:
        event.remove(SearchRecord, "before_insert", stamp)
        alerts.WORKER.wait_idle()


# ------------------------------------------------------------------ the reported pattern


def test_300_searches_under_250_cases_in_two_days_are_flagged_and_the_excess_refused(world: World) -> None:
    """One investigator, 300 search attempts over two simulated days under 250 case numbers; limit 120 a day."""
    ctx = world.ctx
    world.policy(limits='per_user_per_day = 120\nper_user_per_week = 0\nper_case = 0\nhours = ""\non_exceed = "refuse"')
    world.search("paula", "R-PEER-1")  # a colleague's ordinary week: one search
    ran, refused = 0, 0
    for i in range(300):
        day, slot = divmod(i, 150)
        world.clock[0] = START + dt.timedelta(days=day, minutes=4 * slot)  # 08:00 to 18:00 each day
        case = f"2026-{i % 250:05d}"
        try:
            world.search("ivan", case, justification=f"suspect seen on camera, case {case}")
            ran += 1
        except FaceTrailError as exc:
            assert exc.code == "search_limit_exceeded", exc.message
            refused += 1
    assert alerts.WORKER.wait_idle()
    assert (ran, refused) == (240, 60)
    limit_refusals = [a for a in audits(ctx, "search", "refused") if a["error"]["code"] == "search_limit_exceeded"]
    assert len(limit_refusals) == 60 and all(a["actor"] == "user:ivan.inv" for a in limit_refusals)
    with ctx.db.read() as s:
        assert s.query(SearchRecord).filter(SearchRecord.user_id == world.users["ivan"].user_id).count() == 240
    flagged = audits(ctx, "oversight.alert")
    rules = {a["rule"] for a in flagged if a["target"] == "user:ivan.inv"}
    assert {"single_search_cases", "peer_volume", "probe_reused_across_cases"} <= rules
    assert not [a for a in flagged if a["target"] != "user:ivan.inv"]  # the colleague is not flagged
    single = next(a for a in flagged if a["rule"] == "single_search_cases")
    assert single["figures"]["cases_with_one_search"] >= 25 and single["actor"] == "system:oversight"
    peer = next(a for a in flagged if a["rule"] == "peer_volume")
    assert peer["figures"]["peers"] == 2 and peer["figures"]["searches"] > peer["figures"]["threshold"]
    # each rule alerts once per day at most, not once per search
    assert len([a for a in flagged if a["rule"] == "single_search_cases"]) == 2
    # shown to the unit's reviewer and to auditors, not to another unit's reviewer or an investigator
    assert {a["rule"] for a in alerts.list_alerts(ctx, world.users["rita"])} == rules
    assert len(alerts.list_alerts(ctx, world.users["aud"])) == len(flagged)
    assert alerts.list_alerts(ctx, world.users["hank"]) == []
    with pytest.raises(PermissionDeniedError):
        alerts.list_alerts(ctx, world.users["ivan"])
    # counted, never named, in the transparency report
    report = collect_report(ctx, "2026-11-30", "2026-12-01", actor="cli:test")
    counted = {row[0]: row[1:] for row in report.section("oversight_alerts").rows}
    assert counted["single_search_cases"] == [2, 0] and set(counted) == rules
    assert "ivan" not in json.dumps(report.section("oversight_alerts").rows)


def test_other_rules_justification_hours_and_no_lead(world: World) -> None:
    ctx = world.ctx
    for i in range(6):  # the same case again and again, never a lead; the same text; at 02:00
        world.clock[0] = START.replace(hour=2) + dt.timedelta(minutes=i)
        world.search("pete", "R-77", justification="Routine check.")
    for i in range(5):
        world.clock[0] = START.replace(hour=10) + dt.timedelta(minutes=i)
        world.search("pete", f"R-{100 + i}", justification="routine   CHECK")
    assert alerts.WORKER.wait_idle()
    rules = {a["rule"] for a in audits(ctx, "oversight.alert")}
    assert rules == {"repeated_justification", "unusual_hours", "no_lead_repeats", "probe_reused_across_cases"}


def test_acknowledging_an_alert_needs_a_note_the_scope_and_is_audited(world: World) -> None:
    ctx = world.ctx
    for i in range(3):
        world.search("ivan", f"R-{i}")
    assert alerts.WORKER.wait_idle()
    (alert,) = alerts.list_alerts(ctx, world.users["rita"])
    with pytest.raises(FaceTrailError) as no_note:
        alerts.acknowledge(ctx, world.users["rita"], alert["id"], "  ")
    assert no_note.value.code == "bad_input"
    with pytest.raises(FaceTrailError) as other_unit:
        alerts.acknowledge(ctx, world.users["hank"], alert["id"], "looked")
    assert other_unit.value.code == "alert_not_found"
    with pytest.raises(PermissionDeniedError):
        alerts.acknowledge(ctx, world.users["ivan"], alert["id"], "it was me, fine")
    done = alerts.acknowledge(ctx, world.users["rita"], alert["id"], "three photos of one suspect; cases checked")
    assert done["acknowledged"] and done["acknowledged_by"] == "user:rita.rev"
    with pytest.raises(FaceTrailError) as twice:
        alerts.acknowledge(ctx, world.users["aud"], alert["id"], "again")
    assert twice.value.code == "alert_already_acknowledged"
    assert alerts.missing_from_table(ctx, world.users["aud"]) == []
    with ctx.db.transaction() as s:  # a database administrator hides the alert
        s.execute(delete(Alert).where(Alert.id == alert["id"]))
    assert alerts.list_alerts(ctx, world.users["aud"]) == []
    assert alerts.missing_from_table(ctx, world.users["aud"]) == [alert["id"]]  # the chain still has it
    assert alerts.missing_from_table(ctx, world.users["rita"]) == []  # auditors' check
    acks = audits(ctx, "oversight.alert.ack")
    assert [a["outcome"] for a in acks] == ["refused", "not_found", "denied", "ok", "refused"]
    assert acks[3]["note"].startswith("three photos")


# ------------------------------------------------------------------ limits


def test_limits_per_case_hours_and_approval_mode(world: World) -> None:
    ctx = world.ctx
    limits = 'per_user_per_week = 2\nhours = "07:00-19:00"\ntimezone = "UTC"\non_exceed = "refuse"'
    world.policy(limits=limits)
    world.clock[0] = START.replace(hour=6, minute=59)
    with pytest.raises(FaceTrailError) as early:
        world.search("ivan", "R-1")
    assert early.value.code == "outside_search_hours"
    world.clock[0] = START.replace(hour=9)
    world.search("ivan", "R-1")
    world.clock[0] = START + dt.timedelta(days=6)  # Sunday: same week
    world.search("ivan", "R-2")
    with pytest.raises(FaceTrailError) as week:
        world.search("ivan", "R-3")
    assert week.value.code == "search_limit_exceeded"
    world.clock[0] = START + dt.timedelta(days=7)  # next Monday
    world.search("ivan", "R-3")
    world.policy(limits='per_case = 1\non_exceed = "approval"')
    with pytest.raises(FaceTrailError) as needs:
        world.search("paula", "R-3")
    assert needs.value.code == "approval_required"
    refused = audits(ctx, "search", "refused")
    assert [a["error"]["code"] for a in refused] == [
        "outside_search_hours",
        "search_limit_exceeded",
        "approval_required",
    ]


def test_without_the_guard_a_policy_with_limits_refuses_every_search(world: World) -> None:
    world.policy(limits="per_user_per_day = 100")
    saved = hooks.installed_guards()
    hooks._guards.clear()
    try:
        with pytest.raises(FaceTrailError) as missing:
            world.search("ivan", "R-1")
        assert missing.value.code == "oversight_unavailable"
    finally:
        hooks._guards.extend(saved)
    world.search("ivan", "R-1")


# ------------------------------------------------------------------ case verification


def test_case_number_pattern_is_checked_after_nfkc_normalisation(world: World) -> None:
    text = re.sub(
        r"(?m)^case_number_pattern = .*$",
        lambda _: 'case_number_pattern = "\\\\d{4}-RB-\\\\d{4}"',
        default_policy_text(),
    )
    apply_policy(world.ctx, text, actor="cli:test")
    world.search("ivan", "2026-RB-0001")
    world.search("ivan", "２０２６-RB-0002 ")  # full-width digits and a trailing space: the same format
    for bad in ("2026-RB-01", "x2026-RB-0001", "2026-RB-0001\n2"):
        with pytest.raises(FaceTrailError) as refused:
            world.search("ivan", bad)
        assert refused.value.code == "case_number_invalid"
    assert [a["error"]["code"] for a in audits(world.ctx, "search", "refused")] == ["case_number_invalid"] * 3
    with pytest.raises(FaceTrailError) as invalid:
        apply_policy(
            world.ctx,
            re.sub(r"(?m)^case_number_pattern = .*$", lambda _: 'case_number_pattern = "("', default_policy_text()),
            actor="t",
        )
    assert invalid.value.code == "policy_invalid" and "case_number_pattern" in invalid.value.message


def test_case_allow_list_import_and_verification(world: World, tmp_path: Path) -> None:
    ctx = world.ctx
    world.policy(cases='verification = "allow_list"\ncheck_offense = true')
    data = (
        "case_number,offense,status\n2026-0001,robbery,open\n２０２６-0002 ,homicide,open\n2026-0003,robbery,closed\n"
    )
    counts = cases.import_cases(ctx, data.encode(), actor="cli:test")
    assert counts == {"listed": 3, "open": 2, "closed": 1, "added": 3, "changed": 0, "closed_missing": 0}
    world.search("ivan", "2026-0001")
    world.search("ivan", " 2026-0002", offense="homicide")  # full-width digits in the list: NFKC
    for case, offense, code in (
        ("2026-9999", "robbery", "case_not_found"),
        ("2026-0003", "robbery", "case_closed"),
        ("2026-0002", "robbery", "case_offense_mismatch"),
    ):
        with pytest.raises(FaceTrailError) as refused:
            world.search("ivan", case, offense=offense)
        assert refused.value.code == code
    assert [a["error"]["code"] for a in audits(ctx, "search", "refused")] == [
        "case_not_found",
        "case_closed",
        "case_offense_mismatch",
    ]
    # a sync without 2026-0001 closes it
    counts = cases.import_cases(ctx, b"case_number,offense\n2026-0002,homicide\n", actor="cli:test")
    assert counts["closed_missing"] == 1  # 2026-0003 was closed already
    with pytest.raises(FaceTrailError) as closed:
        world.search("ivan", "2026-0001")
    assert closed.value.code == "case_closed"
    with pytest.raises(FaceTrailError) as bad:
        cases.import_cases(ctx, b"case_number,offense,status\n,robbery,open\nX,robbery,maybe\n", actor="cli:test")
    assert bad.value.code == "case_file_invalid" and len(bad.value.details["problems"]) == 2  # type: ignore[arg-type]
    assert [a["outcome"] for a in audits(ctx, "case.import")] == ["ok", "ok", "refused"]


class _Records(http.server.BaseHTTPRequestHandler):
    cases: ClassVar[dict[str, dict[str, str]]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        number = self.path.split("case_number=", 1)[-1]
        _Records.hits.append(number)
        if number == "SLOW":
            time.sleep(1.5)
        body = self.cases.get(number)
        self.send_response(200 if body else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body or {"error": "no such case"}).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def records_system() -> Iterator[str]:
    _Records.cases = {
        "R-OPEN": {"status": "open", "offense": "robbery"},
        "R-SHUT": {"status": "closed", "offense": "robbery"},
        "SLOW": {"status": "open", "offense": "robbery"},
    }
    _Records.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Records)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cases"
    finally:
        server.shutdown()
        server.server_close()


def test_case_verification_through_the_records_system(world: World, records_system: str) -> None:
    ctx = world.ctx
    world.policy(cases='verification = "records_system"')
    cfg = ctx.settings.oversight
    cfg.records_url, cfg.records_timeout_seconds, cfg.records_cache_seconds = records_system, 0.5, 30
    world.search("ivan", "R-OPEN")
    world.search("ivan", "R-OPEN")
    assert _Records.hits == ["R-OPEN"]  # the second answer came from the cache
    for case, code in (("R-NONE", "case_not_found"), ("R-SHUT", "case_closed"), ("SLOW", "case_check_unavailable")):
        with pytest.raises(FaceTrailError) as refused:
            world.search("ivan", case)
        assert refused.value.code == code
    cfg.records_url = f"http://127.0.0.1:{_closed_port()}/cases"  # unreachable: fail closed by default
    with pytest.raises(FaceTrailError) as down:
        world.search("ivan", "R-DOWN")
    assert down.value.code == "case_check_unavailable"
    cfg.records_fail_open = True  # an agency may choose to let searches run, noted as unverified
    world.search("ivan", "R-DOWN")
    assert [a["target"] for a in audits(ctx, "case.unverified")] == ["case:R-DOWN"]
    assert [a["error"]["code"] for a in audits(ctx, "search", "refused")] == [
        "case_not_found",
        "case_closed",
        "case_check_unavailable",
        "case_check_unavailable",
    ]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ audit sampling


def _doc_script(tmp_path: Path) -> Path:
    text = (ROOT / "docs" / "oversight.md").read_text()
    code = re.search(r"<!-- recompute-sample -->\s*```python\n(.*?)```", text, flags=re.S)
    assert code, "docs/oversight.md has no recompute script"
    path = tmp_path / "recompute_sample.py"
    path.write_text(code.group(1))
    return path


def _recompute(script: Path, export: Path, draw: dict[str, Any], extra: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(script),
            str(export),
            "--start",
            draw["start"].isoformat(),
            "--end",
            draw["end"].isoformat(),
            "--share",
            str(draw["share"]),
            "--minimum",
            "1",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_sample_is_recomputed_from_the_chain_and_cannot_change_without_breaking_it(
    world: World, tmp_path: Path
) -> None:
    ctx = world.ctx
    for i in range(8):
        world.search("ivan", f"R-{i}")
    end = dt.datetime.now(dt.UTC)
    with pytest.raises(FaceTrailError) as early:
        sampling.draw_period(ctx, "test:1", START - dt.timedelta(days=400), end, _share(0.25), actor="cli:test")
    assert early.value.code == "sample_not_ready"  # no checkpoint since the period ended
    time.sleep(0.01)
    checkpoint = take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "cli:test").checkpoint
    draw = sampling.draw_period(ctx, "test:1", START - dt.timedelta(days=400), end, _share(0.25), actor="cli:test")
    assert draw["population"] == 8 and len(draw["search_ids"]) == 2 and draw["seed_seq"] == checkpoint["seq"]
    assert sampling.draw_period(ctx, "test:1", START, end, _share(0.9), actor="x")["search_ids"] == draw["search_ids"]
    recorded = audits(ctx, "oversight.sample.draw")
    assert len(recorded) == 1 and recorded[0]["search_ids"] == draw["search_ids"]

    export = tmp_path / "audit.jsonl"
    export_audit(ctx.db, actor="cli:test", out=export, stdout=sys.stdout)
    script = _doc_script(tmp_path)
    cp = ["--checkpoint-seq", str(checkpoint["seq"]), "--checkpoint-hash", checkpoint["hash"]]
    result = _recompute(script, export, draw, cp)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["search_ids"] == draw["search_ids"]

    lines = [json.loads(line) for line in export.read_text().splitlines()]
    by_seq = {r["seq"]: r for r in lines}
    # 1. Drop a drawn search from the population (or alter the seed): the chain no longer verifies.
    drawn_search = next(
        r for r in lines if r["action"] == "search" and json.loads(r["details"])["search_id"] == draw["search_ids"][0]
    )
    forged = dict(drawn_search, action="search.forged")
    _write(export, [forged if r["seq"] == forged["seq"] else r for r in lines])
    result = _recompute(script, export, draw, cp)
    assert result.returncode != 0 and "chain broken" in result.stderr
    # 2. Re-hash everything after the forgery, so the chain itself is consistent again: the sample changes...
    rehashed = _rehash([forged if r["seq"] == forged["seq"] else r for r in lines])
    _write(export, rehashed)
    result = _recompute(script, export, draw, [])
    assert result.returncode == 0 and json.loads(result.stdout)["search_ids"] != draw["search_ids"]
    # ...but no longer matches the signed checkpoint.
    result = _recompute(script, export, draw, cp)
    assert result.returncode != 0 and "checkpoint" in result.stderr
    assert by_seq[checkpoint["seq"]]["hash"] == checkpoint["hash"]


def _share(share: float) -> Any:
    from facetrail.governance.oversight_rules import SamplingRules

    return SamplingRules(period="day", share=share, minimum=1)


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _rehash(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from facetrail.audit.log import record_hash

    out, prev = [], "0" * 64
    for r in rows:
        new = dict(r, prev_hash=prev)
        new["hash"] = record_hash(
            r["seq"], r["ts"], r["actor"], r["action"], r["target"], r["outcome"], r["details"], prev
        )
        out.append(new)
        prev = new["hash"]
    return out


def test_auditors_record_findings_once(world: World) -> None:
    ctx = world.ctx
    for i in range(3):
        world.search("ivan", f"R-{i}")
    end = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "cli:test")
    draw = sampling.draw_period(ctx, "test:2", START - dt.timedelta(days=400), end, _share(1.0), actor="cli:test")
    assert len(draw["search_ids"]) == 3
    items = sampling.list_sample_items(ctx, world.users["aud"])
    assert {i["search_id"] for i in items} == set(draw["search_ids"]) and items[0]["search"]["case_number"]
    with pytest.raises(PermissionDeniedError):
        sampling.list_sample_items(ctx, world.users["rita"])
    good = {"case_real": True, "justification_adequate": True, "offense_right": True}
    bad = {**good, "justification_adequate": False}
    with pytest.raises(FaceTrailError) as no_note:
        sampling.record_finding(ctx, world.users["aud"], items[0]["id"], bad, "")
    assert no_note.value.code == "bad_input"
    done = sampling.record_finding(ctx, world.users["aud"], items[0]["id"], bad, "justification is a template")
    assert done["verdict"] == "inadequate" and done["found_by"] == "user:ada.aud"
    assert sampling.record_finding(ctx, world.users["aud"], items[1]["id"], good, "")["verdict"] == "adequate"
    with pytest.raises(FaceTrailError) as twice:
        sampling.record_finding(ctx, world.users["aud"], items[0]["id"], good, "")
    assert twice.value.code == "conflict"
    with pytest.raises(PermissionDeniedError):
        sampling.record_finding(ctx, world.users["rita"], items[2]["id"], good, "")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    summary = dict(collect_report(ctx, today, today, actor="cli:test").section("audit_sample").rows)
    assert summary == {
        "draws": 1,
        "searches drawn": 3,
        "found adequate": 1,
        "found inadequate": 1,
        "not yet checked": 1,
    }
    assert [a["outcome"] for a in audits(ctx, "oversight.sample.finding")] == [
        "refused",
        "ok",
        "ok",
        "refused",
        "denied",
    ]


# ------------------------------------------------------------------ e-mail over real SMTP


def test_alert_emails_are_queued_sent_over_smtp_and_retried(world: World) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received: list[Any] = []

    class Collect(Message):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            received.append(message)

    ctx = world.ctx
    cfg = ctx.settings.oversight
    port = _closed_port()
    cfg.smtp_host, cfg.smtp_port, cfg.smtp_tls, cfg.smtp_timeout_seconds = "127.0.0.1", port, "none", 2
    cfg.notify_recipients, cfg.unit_recipients = ["oversight@agency.test"], {"Robbery": ["chief@agency.test"]}
    cfg.notify_retry_seconds, cfg.detect_after_search = 0, False
    for i in range(3):
        world.search("ivan", f"R-{i}")  # the same probe under 3 cases
    started = time.monotonic()
    created = alerts.detect_for_user(ctx, world.users["ivan"].user_id)  # type: ignore[arg-type]
    assert len(created) == 1
    assert notify.flush(ctx) == {"sent": 0, "retry": 2, "failed": 0}  # no SMTP server yet: retried later
    assert time.monotonic() - started < 10
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert notify.flush(ctx) == {"sent": 2, "retry": 0, "failed": 0}
    finally:
        controller.stop()
    assert sorted(m["To"] for m in received) == ["chief@agency.test", "oversight@agency.test"]
    assert all("probe_reused_across_cases" in m["Subject"] for m in received)
    assert "ivan.inv" in received[0].get_payload(decode=True).decode() and cfg.smtp_sender in received[0]["From"]
    shown = notify.list_notifications(ctx, world.users["rita"])
    assert {n["status"] for n in shown} == {"sent"} and all(n["attempts"] == 2 for n in shown)
    assert notify.list_notifications(ctx, world.users["hank"]) == []
    with ctx.db.read() as s:
        assert s.query(Notification).count() == 2 and s.query(Alert).count() == 1


def test_cli_case_import_and_scan(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from facetrail.accounts.service import create_api_token
    from facetrail.cli.main import app
    from facetrail.config import get_settings

    ctx = world.ctx
    monkeypatch.setenv("FACETRAIL_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("FACETRAIL_DATABASE_URL", ctx.settings.resolved_database_url)
    get_settings.cache_clear()
    try:
        listing = tmp_path / "cases.csv"
        listing.write_text("case_number,offense\nR-1,robbery\nR-2,robbery\n")
        runner = CliRunner()
        assert runner.invoke(app, ["case", "import", str(listing), "--json"]).exit_code == 6  # no signed-in user
        admin = ["--token", create_api_token(ctx, world.users["admin"], "cli", scope="full")[1]]
        done = runner.invoke(app, ["case", "import", str(listing), "--json", *admin])
        assert done.exit_code == 0, done.output
        assert json.loads(done.output)["added"] == 2
        listing.write_text("case_number,offense,status\nR-1,robbery,unknown\n")
        bad = runner.invoke(app, ["case", "import", str(listing), "--json", *admin])
        assert bad.exit_code == 3 and json.loads(bad.output)["error"]["code"] == "case_file_invalid"
        assert runner.invoke(app, ["case", "packet", "--help"]).exit_code == 0  # the packet command is still there
        scanned = runner.invoke(app, ["oversight", "scan", "--json"])
        assert scanned.exit_code == 0 and json.loads(scanned.output)["new_alerts"] == []
    finally:
        get_settings.cache_clear()
    from facetrail.cli.common import cli_actor

    assert [(a["actor"], a["outcome"]) for a in audits(ctx, "case.import")] == [
        (cli_actor(), "denied"),  # no token: refused, and recorded under the OS user
        ("user:adam.admin", "ok"),  # the signed-in administrator, nothing the caller sets
        ("user:adam.admin", "refused"),
    ]


def test_the_server_installs_the_guard_and_answers_oversight_over_http(world: World) -> None:
    """create_app wires oversight in: with no guard installed before, the API's searches are still held to the
    limits (429, audited), and reviewers acknowledge over HTTP."""
    from fastapi.testclient import TestClient

    from facetrail.accounts.service import create_api_token
    from facetrail.service.app import create_app

    ctx = world.ctx
    world.policy(limits="per_user_per_day = 1")
    hooks._guards.clear()
    try:
        tokens = {n: create_api_token(ctx, world.users[n], "t", scope="full")[1] for n in ("ivan", "rita", "hank")}
        with TestClient(create_app(ctx)) as client:
            assert hooks.installed_guards(), "create_app must install the oversight guard"

            def post_search(case: str) -> Any:
                return client.post(
                    "/api/v1/searches",
                    headers={"Authorization": f"Bearer {tokens['ivan']}"},
                    data={
                        "gallery": "bookings",
                        "case_number": case,
                        "offense": "robbery",
                        "legal_basis": "warrant",
                        "justification": "CCTV still",
                        "candidates": "3",
                    },
                    files={"probe": ("p.jpg", PROBE, "image/jpeg")},
                )

            assert post_search("R-1").status_code == 201
            refused = post_search("R-2")
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "search_limit_exceeded"
            world.policy(limits="per_user_per_day = 0")
            for case in ("R-3", "R-4"):
                assert post_search(case).status_code == 201
            assert alerts.WORKER.wait_idle()
            rita = {"Authorization": f"Bearer {tokens['rita']}"}
            listed = client.get("/api/v1/oversight/alerts", headers=rita).json()
            assert [a["rule"] for a in listed] == ["probe_reused_across_cases"]
            hank = {"Authorization": f"Bearer {tokens['hank']}"}
            assert client.get("/api/v1/oversight/alerts", headers=hank).json() == []
            other = client.post(f"/api/v1/oversight/alerts/{listed[0]['id']}/ack", headers=hank, json={"note": "x"})
            assert other.status_code == 404 and other.json()["error"]["code"] == "alert_not_found"
            done = client.post(f"/api/v1/oversight/alerts/{listed[0]['id']}/ack", headers=rita, json={"note": "ok"})
            assert done.status_code == 200 and done.json()["acknowledged_by"] == "user:rita.rev"
    finally:
        install()  # as the fixture left it
    assert [a["error"]["code"] for a in audits(ctx, "search", "refused")] == ["search_limit_exceeded"]
