"""Bulk enrollment on real photos: provenance, rejections with reasons, idempotent reruns, bad manifests, and
interruption (SIGKILL and Ctrl-C of a real ``facetrail enroll`` process) followed by a rerun."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from facetrail.audit.log import verify_chain
from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.gallery.enroll import EnrollOptions, analyze_file, enroll, write_rejects_csv
from facetrail.gallery.imagestore import ImageStore
from facetrail.gallery.index_sync import check_index
from facetrail.gallery.manifest import ManifestError, UrlRefusedError, items_from_paths, read_manifest
from facetrail.gallery.service import create_gallery, get_gallery, pipeline_for
from facetrail.storage.models import AuditRecord, Face, Subject

FIXTURES = Path(__file__).parents[1] / "fixtures"
FACEAPI = FIXTURES / "faceapi"
TWO_PEOPLE = FIXTURES / "face_recognition" / "two_people.jpg"
BLANK = FIXTURES / "nonface" / "blank_white.png"
REPO = Path(__file__).parents[2]
SHARED = Path(os.environ.get("FACETRAIL_SHARED_DATA", REPO.parent / "shared" / "data"))
LFW = SHARED / "lfw" / "images_deepfunneled"
INLINE = EnrollOptions(workers=0, batch_size=3)


def _gallery(ctx: AppContext, name: str = "bookings", keep_images: bool = True) -> None:
    create_gallery(
        ctx, name, legal_basis="Statute 12(3)", source_system="county-rms", actor="tester", keep_images=keep_images
    )


def _manifest(
    tmp_path: Path,
    rows: list[str],
    header: str = "path,subject_id,name,source_record_id,capture_date,notes",
    name: str = "m.csv",
) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _faces(ctx: AppContext) -> list[tuple[str, str]]:
    with ctx.db.read() as s:
        return [
            tuple(r)
            for r in s.execute(select(Face.image_sha256, Subject.external_id).join(Subject).order_by(Face.id)).all()
        ]


def test_manifest_enrollment_provenance_rejections_and_rerun(ctx: AppContext, tmp_path: Path) -> None:
    _gallery(ctx)
    manifest = _manifest(
        tmp_path,
        [
            f"{FACEAPI / 'amy' / 'amy1.png'},B-1001,Amy F,rec-1,2019-04-02,first booking",
            f"{FACEAPI / 'amy' / 'amy2.png'},B-1001,,rec-2,,",
            f"{FACEAPI / 'raj' / 'raj1.png'},B-1002,Raj K,rec-3,2020-01-31,",
            "missing/nowhere.jpg,B-1003,,rec-4,,",
            f"{BLANK},B-1004,,rec-5,,",
            f"{TWO_PEOPLE},B-1005,,rec-6,,",
        ],
    )
    items = read_manifest(manifest)
    summary = enroll(ctx, "bookings", items, actor="tester", options=INLINE)
    assert (summary.enrolled, summary.skipped_duplicate, summary.subjects_created) == (3, 0, 2)
    assert summary.rejected_by_reason == {"missing_file": 1, "multiple_faces": 1, "no_face": 1}
    missing = next(r for r in summary.rejected if r.reason == "missing_file")
    assert missing.item.row == 5 and "line 5" in missing.detail

    with ctx.db.read() as s:
        face = s.execute(select(Face).where(Face.source_record_id == "rec-1")).scalar_one()
        subject = s.get(Subject, face.subject_id)
        assert subject is not None and (subject.external_id, subject.name) == ("B-1001", "Amy F")
        assert subject.notes == "first booking"
        assert face.capture_date == dt.date(2019, 4, 2) and face.source_system == "county-rms"
        assert face.enrolled_by == "tester" and face.image_stored
        assert face.model_id == pipeline_for(ctx.settings).model_id
        vector = np.frombuffer(face.embedding, dtype="<f4")
        assert vector.shape == (128,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3
        thumb = cv2.imdecode(np.frombuffer(face.thumbnail, np.uint8), cv2.IMREAD_COLOR)
        assert thumb.shape == (112, 112, 3)
        assert face.quality["verdict"] in ("pass", "warn") and set(face.box) == {"x", "y", "width", "height"}
        batches = [
            json.loads(d)
            for d in s.execute(select(AuditRecord.details).where(AuditRecord.action == "enroll.batch")).scalars()
        ]
        assert sum(b["enrolled"] for b in batches) == 3
        assert sorted(i for b in batches for i in b["face_ids"]) == sorted(s.execute(select(Face.id)).scalars().all())
    store = ImageStore.for_data_dir(ctx.data_dir)
    assert store.stored_hashes() == {sha for sha, _ in _faces(ctx)}

    rejects = write_rejects_csv(tmp_path / "rejects.csv", summary.rejected)
    lines = rejects.read_text().splitlines()
    assert lines[0] == "path,row,subject_id,reason,detail" and len(lines) == 4

    again = enroll(ctx, "bookings", read_manifest(manifest), actor="tester", options=INLINE)
    assert (again.enrolled, again.skipped_duplicate, len(again.rejected)) == (0, 3, 3)
    assert len(_faces(ctx)) == 3


def test_largest_face_option_and_no_keep_images(ctx: AppContext) -> None:
    _gallery(ctx, keep_images=False)
    items = items_from_paths([TWO_PEOPLE])
    assert enroll(ctx, "bookings", items, actor="tester", options=INLINE).rejected_by_reason == {"multiple_faces": 1}
    summary = enroll(ctx, "bookings", items, actor="tester", options=EnrollOptions(workers=0, largest_face=True))
    assert summary.enrolled == 1 and _faces(ctx)[0][1] == "two_people"
    assert not ImageStore.for_data_dir(ctx.data_dir).stored_hashes()


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        ("path,name", "a.png,x", "required column 'subject_id' is missing"),
        ("path,subject_id,capture_dat", "a.png,1,2020-01-01", "unknown column"),
        ("path,subject_id,capture_date", "a.png,1,2020-13-01", "line 2: capture_date '2020-13-01'"),
        ("path,subject_id,capture_date", "a.png,1,01/02/2020", "YYYY-MM-DD"),
        ("path,subject_id,capture_date", "a.png,1,2999-01-01", "in the future"),
        ("path,subject_id", "a.png,", "line 2: subject_id is empty"),
        ("path,subject_id", "https://example.org/a.jpg,1", "never downloads"),
        ("path,subject_id", "s3://bucket/a.jpg,1", "is a URL"),
    ],
)
def test_bad_manifest_rows_are_errors_naming_the_row(tmp_path: Path, header: str, row: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace("'", "'")):
        read_manifest(_manifest(tmp_path, [row], header=header))


def test_manifest_size_conflicts_and_jsonl(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(_manifest(tmp_path, [], header="path,subject_id"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(tmp_path / "empty.csv")
    with pytest.raises(ManifestError, match="more than 2 rows"):
        read_manifest(_manifest(tmp_path, ["a,1", "b,2", "c,3"], header="path,subject_id"), max_rows=2)
    conflict = _manifest(tmp_path, ["a,7,Ann", "b,8,Bo", "c,7,Anne"], header="path,subject_id,name")
    with pytest.raises(ManifestError, match=r"subject '7': line 2 names 'Ann', line 4 names 'Anne'"):
        read_manifest(conflict)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        '{"path": "x/a.png", "subject_id": 5, "capture_date": "2021-06-30"}\n\n'
        '{"path": "b.png", "subject_id": "6", "name": null}\n'
    )
    items = read_manifest(jsonl)
    assert [(i.path, i.subject_id, i.capture_date, i.row) for i in items] == [
        (tmp_path / "x" / "a.png", "5", dt.date(2021, 6, 30), 1),
        (tmp_path / "b.png", "6", None, 3),
    ]
    jsonl.write_text('{"path": "a.png"}\n')
    with pytest.raises(ManifestError, match=r"line 1.*'subject_id' is missing"):
        read_manifest(jsonl)
    with pytest.raises(UrlRefusedError):
        items_from_paths(["http://example.org/photos/"])


def test_name_conflict_with_stored_subject_changes_nothing(ctx: AppContext, tmp_path: Path) -> None:
    _gallery(ctx)
    first = _manifest(tmp_path, [f"{FACEAPI / 'amy' / 'amy1.png'},B-1,Amy F,,,"], name="first.csv")
    enroll(ctx, "bookings", read_manifest(first), actor="tester", options=INLINE)
    before = (_faces(ctx), get_gallery(ctx, "bookings"))
    second = _manifest(
        tmp_path,
        [f"{FACEAPI / 'raj' / 'raj1.png'},B-2,Raj,,,", f"{FACEAPI / 'amy' / 'amy2.png'},B-1,Amy G,,,"],
        name="second.csv",
    )
    with pytest.raises(ManifestError, match="line 3 names 'Amy G' but the gallery already has it as 'Amy F'"):
        enroll(ctx, "bookings", read_manifest(second), actor="tester", options=INLINE)
    assert (_faces(ctx), get_gallery(ctx, "bookings")) == before


# ---------------------------------------------------------------- interruption of a real process


def _lfw_folders(min_images: int) -> list[Path]:
    if not LFW.is_dir():
        pytest.skip(f"LFW not found at {LFW} (set FACETRAIL_SHARED_DATA)")
    folders, count = [], 0
    for folder in sorted(LFW.iterdir()):
        folders.append(folder)
        count += len(list(folder.iterdir()))
        if count >= min_images:
            return folders
    return folders


def _expected_hashes(ctx: AppContext, folders: list[Path]) -> set[str]:
    """What an uninterrupted run enrolls, computed independently in this process."""
    pipeline = pipeline_for(ctx.settings)
    out = set()
    for item in items_from_paths(folders, "parent"):
        result = analyze_file(pipeline, item.path, None, largest_face=True)
        if hasattr(result, "sha256"):
            out.add(result.sha256)
    return out


def _start_enroll(ctx: AppContext, folders: list[Path]) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "FACETRAIL_DATA_DIR": str(ctx.data_dir),
        "FACETRAIL_DATABASE_URL": ctx.settings.resolved_database_url,
    }
    args = [
        sys.executable,
        "-m",
        "facetrail.cli.main",
        "enroll",
        "--gallery",
        "lfw",
        "--largest-face",
        "--batch-size",
        "4",
        "--json",
        *map(str, folders),
    ]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _wait_for_faces(ctx: AppContext, proc: subprocess.Popen[str], at_least: int) -> None:
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        with ctx.db.read() as s:
            if s.execute(select(func.count()).select_from(Face)).scalar_one() >= at_least:
                return
        time.sleep(0.05)
    err = proc.stderr.read() if proc.stderr else ""
    pytest.fail(f"enrollment ended or stalled before storing {at_least} faces: {err}")


def _assert_complete_and_consistent(ctx: AppContext, expected: set[str]) -> None:
    faces = _faces(ctx)
    hashes = [sha for sha, _ in faces]
    assert len(hashes) == len(set(hashes)), "duplicate faces"
    assert set(hashes) == expected, "faces lost or extra"
    with ctx.db.read() as s:
        assert verify_chain(s).ok
        batches = [
            json.loads(d)
            for d in s.execute(select(AuditRecord.details).where(AuditRecord.action == "enroll.batch")).scalars()
        ]
    assert sorted(i for b in batches for i in b["face_ids"]) == sorted(_face_ids(ctx))  # every face audited once
    assert ImageStore.for_data_dir(ctx.data_dir).stored_hashes() == expected
    assert not [p for p in ImageStore.for_data_dir(ctx.data_dir).iter_files() if p.name.startswith(".tmp")]
    check = check_index(ctx, get_gallery(ctx, "lfw").id, repair=False)  # the persisted index, loaded afresh
    assert check.consistent and check.index_count == len(expected), check.problems


def _face_ids(ctx: AppContext) -> list[int]:
    with ctx.db.read() as s:
        return list(s.execute(select(Face.id)).scalars())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_enrollment_resumes_without_duplicates_or_loss(ctx: AppContext, sig: signal.Signals) -> None:
    folders = _lfw_folders(40)
    _gallery(ctx, "lfw")
    expected = _expected_hashes(ctx, folders)
    assert len(expected) >= 30

    proc = _start_enroll(ctx, folders)
    try:
        _wait_for_faces(ctx, proc, at_least=4)
        if sig == signal.SIGKILL:
            os.kill(proc.pid, signal.SIGKILL)  # the parent alone, as `kill -9 PID` does; workers must notice
        else:
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, err
        interrupted = json.loads(out)
        assert interrupted["interrupted"] is True and interrupted["enrolled"] >= 4
    partial = len(_faces(ctx))
    assert 4 <= partial <= len(expected)

    rerun = _start_enroll(ctx, folders)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    result = json.loads(out)
    assert result["enrolled"] == len(expected) - partial
    assert result["skipped_duplicate"] == partial
    _assert_complete_and_consistent(ctx, expected)
