"""Retention rules, legal holds and verifiable deletion, on SQLite and PostgreSQL.

The deletion test searches the raw storage (database files or pages, WAL, index files, image store) for
the deleted face's embedding, thumbnail and original image bytes; each rule is attacked through the service,
the CLI and the API, and every refusal must be audited.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from facetrail.accounts.service import bootstrap_admin, create_api_token
from facetrail.audit.log import verify_chain
from facetrail.config import Settings
from facetrail.context import AppContext
from facetrail.gallery.enroll import EnrollOptions, enroll
from facetrail.gallery.imagestore import ImageStore
from facetrail.gallery.manifest import EnrollItem, items_from_paths
from facetrail.gallery.service import create_gallery, get_subject
from facetrail.governance.policy import active_policy
from facetrail.policy.principal import Principal
from facetrail.retention.deletion import delete_face, delete_subject, get_certificate
from facetrail.retention.holds import LegalHoldError, add_hold, lift_hold
from facetrail.retention.rules import RetentionRuleError, parse_rule, set_disposition, set_rule
from facetrail.retention.run import run_retention
from facetrail.storage.models import AuditRecord, Face, Subject, User

FACEAPI = Path(__file__).parents[1] / "fixtures" / "faceapi"  # amy, raj, sheldon: two portraits each
INLINE = EnrollOptions(workers=0, batch_size=2)
OLD = dt.date(2010, 3, 1)


def _gallery(ctx: AppContext, items: list[EnrollItem] | None = None) -> None:
    create_gallery(ctx, "bookings", legal_basis="Statute 12(3)", source_system="county-rms", actor="tester")
    people = [FACEAPI / p for p in ("amy", "raj", "sheldon")]
    summary = enroll(ctx, "bookings", items or items_from_paths(people, "parent"), actor="tester", options=INLINE)
    assert summary.enrolled == 6 and not summary.rejected


def _audit(ctx: AppContext) -> list[Any]:
    """(seq, action, actor, outcome, details) rows, in order."""
    with ctx.db.read() as s:
        return list(
            s.execute(
                select(
                    AuditRecord.seq, AuditRecord.action, AuditRecord.actor, AuditRecord.outcome, AuditRecord.details
                ).order_by(AuditRecord.seq)
            ).all()
        )


def _subjects(ctx: AppContext) -> list[str]:
    with ctx.db.read() as s:
        return list(s.execute(select(Subject.external_id).order_by(Subject.external_id)).scalars())


# --- no byte left ------------------------------------------------------------------------------------------


CHUNK = 32  # SQLite splits a row across pages (4-byte headers on overflow pages): search chunk by chunk


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data) - CHUNK + 1, CHUNK)]


def _holds(data: bytes, chunks: list[bytes]) -> bool:
    return any(chunk in data for chunk in chunks)


def _files_holding(root: Path, needles: dict[str, list[bytes]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for name, chunks in needles.items():
                if _holds(data, chunks):
                    found.setdefault(name, []).append(str(path.relative_to(root)))
    return found


def _postgres_pages_holding(ctx: AppContext, needles: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Every page of the face tables and their TOAST tables, read raw (dead tuples and free space included)."""
    found: dict[str, list[str]] = {}
    with ctx.db.engine.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
        conn.commit()
        relations = []
        for table in ("faces", "subjects"):
            relations.append(table)
            toast = conn.execute(
                text("SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = :t"), {"t": table}
            ).scalar_one()
            if toast and toast != "-":
                relations.append(toast)
        for rel in relations:
            blocks = conn.execute(text("SELECT pg_relation_size(CAST(:r AS regclass)) / 8192"), {"r": rel}).scalar_one()
            for block in range(int(blocks)):
                page = bytes(conn.execute(text("SELECT get_raw_page(:r, :b)"), {"r": rel, "b": block}).scalar_one())
                for name, chunks in needles.items():
                    if _holds(page, chunks):
                        found.setdefault(name, []).append(f"{rel}#{block}")
    return found


def _checkpoint(ctx: AppContext) -> None:
    raw = ctx.db.engine.raw_connection()
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def test_deleted_subject_leaves_no_byte_of_image_embedding_or_thumbnail(ctx: AppContext) -> None:
    _gallery(ctx)
    amy = get_subject(ctx, "bookings", "amy")
    with ctx.db.read() as s:
        face = s.get(Face, amy["faces"][0]["face_id"])
        assert face is not None
        embedding, thumbnail, image_sha = bytes(face.embedding), bytes(face.thumbnail), face.image_sha256
    image = ImageStore.for_data_dir(ctx.data_dir).path_for(image_sha).read_bytes()
    # Every chunk of the vector; the thumbnail and image past their headers (shared by every JPEG and PNG).
    needles = {"embedding": _chunks(embedding), "thumbnail": _chunks(thumbnail[1024:]), "image": _chunks(image[1024:])}
    assert len(embedding) >= 256 and len(thumbnail) > 2048 and len(needles["image"]) > 100

    # The search is sensitive: before deletion every needle is found where it is stored.
    storage = ctx.data_dir.parent  # the test's folder: the SQLite files beside DATA_DIR (index/, images/)
    if ctx.db.is_sqlite:
        _checkpoint(ctx)
        before = _files_holding(storage, needles)
        assert "facetrail.db" in before["embedding"] and "facetrail.db" in before["thumbnail"]
    else:
        before = _files_holding(storage, needles)
        for name, pages in _postgres_pages_holding(ctx, needles).items():
            before.setdefault(name, []).extend(pages)
        assert before["embedding"] and before["thumbnail"]
    assert any(p.startswith("data/index/") for p in before["embedding"])  # the exact index holds the raw vector
    assert any(p.startswith("data/images/") for p in before["image"])

    result = delete_subject(ctx, "bookings", "amy", actor="tester", reason="court order 42")

    leftovers = _files_holding(storage, needles)  # SQLite .db, -wal, -shm; index files; image store
    if not ctx.db.is_sqlite:
        leftovers.update(_postgres_pages_holding(ctx, needles))
        with ctx.db.read() as s:  # nothing SELECT-visible either
            assert not s.execute(select(Face.id).where(Face.image_sha256 == image_sha)).first()
    assert leftovers == {}, f"deleted bytes remain; certificate: {get_certificate(ctx, result['certificate_seq'])}"

    cert = get_certificate(ctx, result["certificate_seq"])
    details = cert["details"]
    assert details["scope"] == "subject" and details["external_id"] == "amy"
    assert details["reason"] == "court order 42" and details["deleted_by"] == "tester"
    assert sorted(details["face_ids"]) == sorted(f["face_id"] for f in amy["faces"])
    assert details["counts"]["faces"] == details["counts"]["embeddings"] == details["counts"]["thumbnails"] == 2
    assert details["counts"]["index_entries"] == 2 and details["counts"]["images_removed"] == 2
    import hashlib

    entry = next(f for f in details["faces"] if f["image_sha256"] == image_sha)
    assert entry["embedding_sha256"] == hashlib.sha256(embedding).hexdigest()
    assert entry["thumbnail_sha256"] == hashlib.sha256(thumbnail).hexdigest()
    if ctx.db.is_sqlite:
        assert details["storage"] == {
            "backend": "sqlite",
            "secure_delete": True,
            "wal_truncated": True,
            "vacuum": False,
        }
    else:
        assert details["storage"]["vacuum"] == "full"
    # Only hashes and counts: no encoding of the biometric bytes anywhere in the certificate.
    record = json.dumps(cert)
    for sample in (embedding[:48], thumbnail[1024:1072], image[1024:1072]):
        for encoded in (sample.hex(), base64.b64encode(sample).decode()):
            assert encoded not in record
    with ctx.db.read() as s:
        assert verify_chain(s).ok


# --- legal holds -------------------------------------------------------------------------------------------


def _admin_client(ctx: AppContext) -> tuple[TestClient, str]:
    """A client acting as the administrator, and the administrator's API token (for the CLI's --token)."""
    from facetrail.service.app import create_app

    bootstrap_admin(ctx)
    with ctx.db.transaction() as s:
        s.execute(update(User).values(must_change_password=False))
        admin_id = s.execute(select(User.id)).scalar_one()
    who = Principal(user_id=admin_id, username="admin", role="administrator", unit_id=None, unit_name=None)
    _, secret = create_api_token(ctx, who, "retention test", scope="full")
    return TestClient(create_app(ctx), headers={"Authorization": f"Bearer {secret}"}), secret


def _cli(settings: Settings, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FACETRAIL_DATA_DIR": str(settings.data_dir),
        "FACETRAIL_DATABASE_URL": settings.resolved_database_url,
        "FACETRAIL_API_TOKEN": token,
    }
    return subprocess.run(
        [sys.executable, "-m", "facetrail.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_held_subject_cannot_be_deleted_by_service_cli_api_or_retention(ctx: AppContext, settings: Settings) -> None:
    _gallery(ctx)
    set_rule(ctx, "bookings", 'delete_on_disposition = ["acquitted"]', actor="tester")
    client, token = _admin_client(ctx)
    added = _cli(
        settings, token, "hold", "add", "--subject", "bookings:raj", "--reason", "preservation order 7", "--json"
    )
    assert added.returncode == 0, added.stderr
    hold_id = json.loads(added.stdout)["hold"]["id"]
    raj_face = get_subject(ctx, "bookings", "raj")["faces"][0]["face_id"]

    with pytest.raises(LegalHoldError, match="legal hold"):
        delete_subject(ctx, "bookings", "raj", actor="tester", reason="try")
    with pytest.raises(LegalHoldError):
        delete_face(ctx, "bookings", raj_face, actor="tester")
    cli = _cli(settings, token, "gallery", "delete-subject", "bookings", "raj", "--json")
    assert cli.returncode != 0 and json.loads(cli.stdout)["error"]["code"] == "legal_hold"
    r = client.delete("/api/v1/galleries/bookings/subjects/raj")
    assert r.status_code == 409 and r.json()["error"]["code"] == "legal_hold"
    r = client.delete(f"/api/v1/galleries/bookings/faces/{raj_face}")
    assert r.status_code == 409

    set_disposition(ctx, "bookings", "raj", "acquitted", actor="tester")
    report = run_retention(ctx, dry_run=False, actor="tester")
    assert [(a.external_id, a.status, a.hold_ids) for a in report.actions] == [("raj", "held", [hold_id])]
    assert len(get_subject(ctx, "bookings", "raj")["faces"]) == 2

    refusals = [r for r in _audit(ctx) if r.outcome == "refused"]
    assert [(r.action, r.actor) for r in refusals] == [
        ("subject.delete", "tester"),
        ("face.delete", "tester"),
        ("subject.delete", "user:admin"),  # the CLI, as the administrator behind --token
        ("subject.delete", "user:admin"),
        ("face.delete", "user:admin"),
    ]
    assert all(json.loads(r.details)["hold_ids"] == [hold_id] for r in refusals)
    assert json.loads(_audit(ctx)[-1].details)["held"][0]["hold_ids"] == [hold_id]

    # Lifted (via the API): the acquitted subject goes at the next run, with a certificate.
    assert client.post(f"/api/v1/holds/{hold_id}/lift", json={"reason": "order vacated"}).status_code == 200
    assert client.get("/api/v1/holds").json() == []
    report = run_retention(ctx, dry_run=False, actor="tester")
    assert [(a.external_id, a.status) for a in report.actions] == [("raj", "deleted")]
    cert = client.get(f"/api/v1/retention/certificates/{report.actions[0].certificate_seq}").json()
    assert cert["details"]["basis"]["kind"] == "retention_rule" and "acquitted" in cert["details"]["reason"]
    assert _subjects(ctx) == ["amy", "sheldon"]
    with pytest.raises(Exception, match="already lifted"):
        lift_hold(ctx, hold_id, actor="tester", reason="again")


# --- rules -------------------------------------------------------------------------------------------------


def test_rules_are_validated() -> None:
    assert parse_rule("delete_after_years = 7").due_date(dt.date(2016, 2, 29)) == dt.date(2023, 2, 28)
    assert parse_rule('{"delete_after_days": 30}').due_date(dt.date(2020, 1, 1)) == dt.date(2020, 1, 31)
    for bad in ("", "delete_after_years = 0", "keep = true", 'delete_on_disposition = ["convicted"]', "{", "x ="):
        with pytest.raises(RetentionRuleError):
            parse_rule(bad)


def test_retention_run_applies_age_and_disposition_rules_and_dry_run_changes_nothing(ctx: AppContext) -> None:
    amy, raj, sheldon = (sorted((FACEAPI / p).iterdir()) for p in ("amy", "raj", "sheldon"))
    items = [EnrollItem(path=p, subject_id="amy", capture_date=OLD) for p in amy]
    items += [EnrollItem(path=raj[0], subject_id="raj", capture_date=OLD), EnrollItem(path=raj[1], subject_id="raj")]
    items += [EnrollItem(path=p, subject_id="sheldon") for p in sheldon]
    _gallery(ctx, items)
    set_rule(ctx, "bookings", "delete_after_years = 7\ndelete_on_disposition = ['expunged']", actor="tester")
    set_disposition(ctx, "bookings", "sheldon", "expunged", actor="tester", reason="court order")
    add_hold(ctx, actor="tester", reason="appeal pending", case_number="C-1")  # a case hold holds no subject
    raj_old = next(f["face_id"] for f in get_subject(ctx, "bookings", "raj")["faces"] if f["capture_date"])

    active_policy(ctx)  # the shipped policy comes into force (version 1, audited) on first use, not in the dry run
    before = (len(_audit(ctx)), ImageStore.for_data_dir(ctx.data_dir).stored_hashes())
    dry = run_retention(ctx, dry_run=True, actor="tester")
    planned = {(a.kind, a.external_id, tuple(a.face_ids) if a.kind == "faces" else (), a.status) for a in dry.actions}
    assert planned == {
        ("subject", "amy", (), "due"),
        ("faces", "raj", (raj_old,), "due"),
        ("subject", "sheldon", (), "due"),
    }
    assert (len(_audit(ctx)), ImageStore.for_data_dir(ctx.data_dir).stored_hashes()) == before
    assert _subjects(ctx) == ["amy", "raj", "sheldon"]

    report = run_retention(ctx, dry_run=False, actor="tester")
    assert {a.status for a in report.actions} == {"deleted"}
    assert _subjects(ctx) == ["raj"]
    assert [f["face_id"] for f in get_subject(ctx, "bookings", "raj")["faces"]] != [raj_old]
    assert len(ImageStore.for_data_dir(ctx.data_dir).stored_hashes()) == 1
    certs = [json.loads(r.details) for r in _audit(ctx) if r.action == "deletion.certificate"]
    assert sorted((c["scope"], c["external_id"]) for c in certs) == [
        ("faces", "raj"),
        ("subject", "amy"),
        ("subject", "sheldon"),
    ]
    assert _audit(ctx)[-1].action == "retention.run"
    assert run_retention(ctx, dry_run=False, actor="tester").actions == []  # nothing left due


def test_kept_probe_images_follow_the_policy_retention_and_case_holds(ctx: AppContext) -> None:
    """A kept probe image is deleted after the policy's probe_image_days (its hash stays), unless its case is held."""
    from facetrail.gallery.search import probe_store, search_gallery
    from facetrail.governance.policy import active_policy, apply_policy
    from facetrail.storage.models import SearchRecord

    _gallery(ctx)
    ctx.settings.keep_probe_images = True
    probes = {
        case: FACEAPI / person / sorted(p.name for p in (FACEAPI / person).iterdir())[0]
        for case, person in (("C-FREE", "amy"), ("C-HELD", "raj"))
    }
    for case, probe in probes.items():
        search_gallery(
            ctx, probe, gallery="bookings", case_number=case, offense="robbery", reason="test", actor="tester"
        )
    add_hold(ctx, actor="tester", reason="appeal pending", case_number="C-HELD")
    store = probe_store(ctx)
    with ctx.db.read() as s:
        sha = {r.case_number: r.probe_sha256 for r in s.execute(select(SearchRecord)).scalars()}
    assert all(store.path_for(h).exists() for h in sha.values())

    days = active_policy(ctx).retention.probe_image_days
    not_yet = dt.date.today() + dt.timedelta(days=days - 1)
    assert [
        a for a in run_retention(ctx, dry_run=False, actor="tester", today=not_yet).actions if a.kind == "probe"
    ] == []

    longer = apply_policy(
        ctx,
        active_policy_text(ctx).replace(f"probe_image_days = {days}", f"probe_image_days = {days + 30}"),
        actor="tester",
    )
    assert longer["version"] >= 2
    later = dt.date.today() + dt.timedelta(days=days + 1)
    assert [
        a
        for a in run_retention(ctx, dry_run=True, actor="tester", today=later).actions
        if a.kind == "probe" and a.status == "due"
    ] == []  # the policy now keeps them longer

    much_later = dt.date.today() + dt.timedelta(days=days + 31)
    report = run_retention(ctx, dry_run=False, actor="tester", today=much_later)
    statuses = {a.status for a in report.actions if a.kind == "probe"}
    assert "deleted" in statuses
    assert not store.path_for(sha["C-FREE"]).exists()
    assert store.path_for(sha["C-HELD"]).exists()  # the held case keeps its probe
    with ctx.db.read() as s:
        rows = {r.case_number: (r.probe_sha256, r.probe_stored) for r in s.execute(select(SearchRecord)).scalars()}
    assert rows["C-FREE"] == (sha["C-FREE"], False)  # the hash stays, the image is gone
    assert rows["C-HELD"] == (sha["C-HELD"], True)
    certs = [json.loads(r.details) for r in _audit(ctx) if r.action == "deletion.certificate"]
    assert any(c["scope"] == "probes" and c["basis"]["days"] == days + 30 for c in certs)
    with ctx.db.read() as s:
        assert verify_chain(s).ok


def active_policy_text(ctx: AppContext) -> str:
    from facetrail.governance.policy import show_policy

    return str(show_policy(ctx)["text"])
