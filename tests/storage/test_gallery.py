"""Galleries: create, list, show, delete; every change audited; deletions clear the image store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, update

from facetrail.audit.log import verify_chain
from facetrail.config import Settings
from facetrail.context import AppContext
from facetrail.errors import BadInputError, ModelMismatchError
from facetrail.gallery.enroll import EnrollOptions, enroll
from facetrail.gallery.imagestore import ImageStore
from facetrail.gallery.manifest import items_from_paths
from facetrail.gallery.service import (
    FaceNotFoundError,
    GalleryExistsError,
    GalleryNotFoundError,
    SubjectNotFoundError,
    create_gallery,
    get_gallery,
    get_subject,
    list_galleries,
    pipeline_for,
)
from facetrail.retention.deletion import delete_face, delete_subject
from facetrail.storage.models import AuditRecord, Face, Gallery, Subject

FACEAPI = Path(__file__).parents[1] / "fixtures" / "faceapi"  # amy, raj, sheldon: two portraits each
PEOPLE = [FACEAPI / "amy", FACEAPI / "raj", FACEAPI / "sheldon"]
INLINE = EnrollOptions(workers=0, batch_size=2)


def _audit(ctx: AppContext) -> list[tuple[str, dict[str, object]]]:
    """(action, details) of every audit record, in order."""
    with ctx.db.read() as s:
        rows = s.execute(select(AuditRecord.action, AuditRecord.details).order_by(AuditRecord.seq)).all()
    return [(action, json.loads(details)) for action, details in rows]


def _make(ctx: AppContext, name: str = "bookings", **kw: object) -> None:
    create_gallery(ctx, name, legal_basis="Statute 12(3)", source_system="county-rms", actor="tester", **kw)  # type: ignore[arg-type]


def test_create_list_show_and_audit(ctx: AppContext) -> None:
    summary = create_gallery(
        ctx,
        "bookings",
        legal_basis="Statute 12(3)",
        source_system="county-rms",
        actor="tester",
        description="booking photos",
        retention_rule="7 years",
    )
    assert summary.model_id == pipeline_for(ctx.settings).model_id
    assert (summary.subjects, summary.faces, summary.keep_images) == (0, 0, True)
    _make(ctx, "second", keep_images=False)
    assert [g.name for g in list_galleries(ctx)] == ["bookings", "second"]
    shown = get_gallery(ctx, "bookings")
    assert (shown.legal_basis, shown.source_system, shown.retention_rule) == ("Statute 12(3)", "county-rms", "7 years")
    records = _audit(ctx)
    assert [action for action, _ in records] == ["gallery.create", "gallery.create"]
    assert records[0][1]["legal_basis"] == "Statute 12(3)"
    with ctx.db.read() as s:
        assert verify_chain(s).ok


def test_create_refuses_duplicates_and_blank_provenance(ctx: AppContext) -> None:
    _make(ctx)
    with pytest.raises(GalleryExistsError):
        _make(ctx)
    with pytest.raises(BadInputError, match="legal basis"):
        create_gallery(ctx, "x", legal_basis="  ", source_system="rms", actor="tester")
    with pytest.raises(BadInputError, match="source"):
        create_gallery(ctx, "x", legal_basis="law", source_system="", actor="tester")
    with pytest.raises(GalleryNotFoundError):
        get_gallery(ctx, "nope")
    assert [g.name for g in list_galleries(ctx)] == ["bookings"]
    assert len(_audit(ctx)) == 1  # refused actions leave no record and no gallery


def test_delete_subject_and_face_remove_rows_images_and_audit(ctx: AppContext) -> None:
    _make(ctx)
    summary = enroll(ctx, "bookings", items_from_paths(PEOPLE, "parent"), actor="tester", options=INLINE)
    assert summary.enrolled == 6 and not summary.rejected
    store = ImageStore.for_data_dir(ctx.data_dir)
    assert len(store.stored_hashes()) == 6

    amy = get_subject(ctx, "bookings", "amy")
    assert len(amy["faces"]) == 2
    result = delete_subject(ctx, "bookings", "amy", actor="tester", reason="court order 42")
    assert sorted(result["deleted_face_ids"]) == sorted(f["face_id"] for f in amy["faces"])
    assert not {f["image_sha256"] for f in amy["faces"]} & store.stored_hashes()
    with pytest.raises(SubjectNotFoundError):
        get_subject(ctx, "bookings", "amy")

    raj_face = get_subject(ctx, "bookings", "raj")["faces"][0]
    delete_face(ctx, "bookings", raj_face["face_id"], actor="tester")
    assert raj_face["image_sha256"] not in store.stored_hashes()
    with pytest.raises(FaceNotFoundError):
        delete_face(ctx, "bookings", raj_face["face_id"], actor="tester")

    with ctx.db.read() as s:
        stored = set(s.execute(select(Face.image_sha256)).scalars())
        assert s.execute(select(Subject.external_id).order_by(Subject.external_id)).scalars().all() == [
            "raj",
            "sheldon",
        ]
        assert verify_chain(s).ok
    assert store.stored_hashes() == stored and len(stored) == 3
    records = [r for r in _audit(ctx) if r[0] != "deletion.certificate"]  # each deletion is also certified
    assert [action for action, _ in records[-2:]] == ["subject.delete", "face.delete"]
    assert records[-2][1]["reason"] == "court order 42"


def test_shared_image_kept_while_another_gallery_uses_it(ctx: AppContext) -> None:
    _make(ctx, "a")
    _make(ctx, "b")
    for name in ("a", "b"):
        enroll(ctx, name, items_from_paths([FACEAPI / "raj"], "parent"), actor="tester", options=INLINE)
    store = ImageStore.for_data_dir(ctx.data_dir)
    delete_subject(ctx, "a", "raj", actor="tester")
    assert len(store.stored_hashes()) == 2  # gallery b still holds them


def test_model_mismatch_refuses_enrollment_and_stores_nothing(ctx: AppContext) -> None:
    _make(ctx)
    with ctx.db.transaction() as s:
        s.execute(update(Gallery).values(model_id="some-other-model@0000"))
    before = len(_audit(ctx))
    with pytest.raises(ModelMismatchError, match="some-other-model"):
        enroll(ctx, "bookings", items_from_paths([FACEAPI]), actor="tester", options=INLINE)
    assert get_gallery(ctx, "bookings").faces == 0
    assert len(_audit(ctx)) == before
    assert not ImageStore.for_data_dir(ctx.data_dir).stored_hashes()


def test_cli_gallery_create_list_show_json(settings: Settings) -> None:
    env = {
        **os.environ,
        "FACETRAIL_DATA_DIR": str(settings.data_dir),
        "FACETRAIL_DATABASE_URL": settings.resolved_database_url,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "facetrail.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    created = cli(
        "gallery", "create", "mugs", "--legal-basis", "Act 1", "--source", "rms", "--no-keep-images", "--json"
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["gallery"]["keep_images"] is False
    assert cli("gallery", "create", "mugs", "--legal-basis", "Act 1", "--source", "rms").returncode == 3
    listed = json.loads(cli("gallery", "list", "--json").stdout)
    assert [g["name"] for g in listed["galleries"]] == ["mugs"]
    shown = json.loads(cli("gallery", "show", "mugs", "--json").stdout)["gallery"]
    assert (shown["legal_basis"], shown["source_system"], shown["faces"]) == ("Act 1", "rms", 0)
    missing = cli("gallery", "show", "nope", "--json")
    assert missing.returncode == 3 and json.loads(missing.stdout)["error"]["code"] == "gallery_not_found"
