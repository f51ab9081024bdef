"""The bulk load of precomputed embeddings (gallery/bulk_load.py), on SQLite and PostgreSQL: batches with their
audit records and change-log entries in one transaction, other processes catch up from the log alone, a rerun
duplicates nothing, bad vectors write nothing."""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from index_helpers import create_gallery
from sqlalchemy import func, select

from facetrail.audit.log import verify_chain
from facetrail.config import Settings
from facetrail.context import AppContext, open_context
from facetrail.errors import BadInputError, ModelMismatchError
from facetrail.gallery import index_sync
from facetrail.gallery.bulk_load import SOURCE, FaceRows, bulk_load_embeddings
from facetrail.storage.cluster_models import GalleryChange
from facetrail.storage.models import AuditRecord, Face, Subject

THUMB = b"\xff\xd8\xff\xd9"


def rows(n: int, seed: int = 0, dim: int = 128, per_subject: int = 2) -> FaceRows:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return FaceRows(
        external_ids=[f"P{seed}-{i // per_subject}" for i in range(n)],
        image_sha256=[hashlib.sha256(b"%d-%d" % (seed, i)).hexdigest() for i in range(n)],
        embeddings=vectors,
    )


def load(ctx: AppContext, gallery: str, chunks: list[FaceRows], batch_size: int = 40):  # type: ignore[no-untyped-def]
    return bulk_load_embeddings(
        ctx,
        gallery,
        chunks,
        actor="operator",
        model_id=ctx.pipeline.model_id,
        source_system="legacy-afis",
        placeholder_thumbnail=THUMB,
        batch_size=batch_size,
    )


def audit(ctx: AppContext, action: str) -> list[dict]:  # type: ignore[type-arg]
    with ctx.db.read() as session:
        found = session.execute(
            select(AuditRecord.details).where(AuditRecord.action == action).order_by(AuditRecord.seq)
        ).scalars()
        return [json.loads(d) if isinstance(d, str) else d for d in found]


def test_batches_commit_faces_log_and_audit_together_and_others_catch_up_from_the_log(
    ctx: AppContext, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery_id = create_gallery(ctx, "legacy", ctx.pipeline.model_id)
    other = open_context(settings)  # another process, index loaded before the load
    try:
        assert index_sync.get_gallery_index(other, gallery_id).count == 0
        data = rows(100)
        report = load(
            ctx,
            "legacy",
            [
                FaceRows(data.external_ids[:70], data.image_sha256[:70], data.embeddings[:70]),
                FaceRows(data.external_ids[70:], data.image_sha256[70:], data.embeddings[70:]),
            ],
        )
        assert (report.loaded, report.skipped_duplicate, report.subjects_created) == (100, 0, 50)
        assert report.batches == 3  # 40 + 30 of the first chunk, 30 of the second
        with ctx.db.read() as session:
            faces = session.execute(
                select(Face.id, Face.image_sha256, Face.embedding, Face.source_system, Face.enrolled_by)
                .where(Face.gallery_id == gallery_id)
                .order_by(Face.id)
            ).all()
            log = session.execute(
                select(GalleryChange.version, GalleryChange.face_id, GalleryChange.op)
                .where(GalleryChange.gallery_id == gallery_id)
                .order_by(GalleryChange.version)
            ).all()
            assert session.execute(select(func.count()).select_from(Subject)).scalar_one() == 50
        assert [f.image_sha256 for f in faces] == list(data.image_sha256)
        assert {(f.source_system, f.enrolled_by) for f in faces} == {("legacy-afis", "operator")}
        np.testing.assert_array_equal(
            np.frombuffer(b"".join(f.embedding for f in faces), "<f4").reshape(100, -1), data.embeddings
        )
        assert [(v, f, o) for v, f, o in log] == [(i + 1, faces[i].id, "add") for i in range(100)]
        batches = audit(ctx, "enroll.batch")
        assert [b["enrolled"] for b in batches] == [40, 30, 30]
        assert all(b["source"] == SOURCE for b in batches)
        assert sorted(i for b in batches for i in b["face_ids"]) == [f.id for f in faces]
        (run,) = audit(ctx, "enroll.run")
        assert (run["enrolled"], run["source"]) == (100, SOURCE)
        # the other process applies the log only: no full read of the gallery
        full_reads: list[int] = []
        real = index_sync.read_db_vectors
        monkeypatch.setattr(index_sync, "read_db_vectors", lambda s, g: full_reads.append(g) or real(s, g))
        gi = index_sync.get_gallery_index(other, gallery_id)
        assert gi.count == 100 and full_reads == []
        scores, ids = gi.search(data.embeddings[17], 1)
        assert int(ids[0]) == faces[17].id and scores[0] == pytest.approx(1.0, abs=1e-5)
        with ctx.db.read() as session:
            assert verify_chain(session).ok
    finally:
        other.close()


def test_a_rerun_skips_what_was_loaded_and_adds_only_the_rest(ctx: AppContext) -> None:
    gallery_id = create_gallery(ctx, "legacy", ctx.pipeline.model_id)
    data = rows(60, seed=3)
    first = FaceRows(data.external_ids[:25], data.image_sha256[:25], data.embeddings[:25])
    load(ctx, "legacy", [first])  # a load that stopped after 25 faces
    report = load(ctx, "legacy", [data])
    assert (report.loaded, report.skipped_duplicate) == (35, 25)
    assert report.subjects_created == 30 - 13  # subjects 0..12 came with the first 25 faces
    with ctx.db.read() as session:
        assert session.execute(select(func.count()).where(Face.gallery_id == gallery_id)).scalar_one() == 60
    again = load(ctx, "legacy", [data])
    assert (again.loaded, again.skipped_duplicate, again.subjects_created) == (0, 60, 0)
    assert index_sync.check_index(ctx, gallery_id, repair=False).consistent


@pytest.mark.parametrize(
    "damage",
    ["not normalised", "nan", "dimension", "bad hash", "empty subject", "short column"],
)
def test_bad_input_writes_nothing(ctx: AppContext, damage: str) -> None:
    gallery_id = create_gallery(ctx, "legacy", ctx.pipeline.model_id)
    load(ctx, "legacy", [rows(4, seed=1)])  # the gallery's dimension is now 128
    data = rows(10, seed=2)
    vectors = data.embeddings.copy()
    ext, hashes = list(data.external_ids), list(data.image_sha256)
    if damage == "not normalised":
        vectors[3] *= 2
    elif damage == "nan":
        vectors[5, 0] = np.nan
    elif damage == "dimension":
        vectors = rows(10, seed=2, dim=64).embeddings
    elif damage == "bad hash":
        hashes[9] = "ABC"
    elif damage == "empty subject":
        ext[0] = ""
    else:
        hashes = hashes[:-1]
    with pytest.raises(BadInputError):
        load(ctx, "legacy", [FaceRows(ext, hashes, vectors)])
    with ctx.db.read() as session:
        assert session.execute(select(func.count()).where(Face.gallery_id == gallery_id)).scalar_one() == 4
    runs = audit(ctx, "enroll.run")
    assert runs[-1]["enrolled"] == 0  # the attempt is on record, with nothing loaded
    with ctx.db.read() as session:
        outcome = (
            session.execute(
                select(AuditRecord.outcome).where(AuditRecord.action == "enroll.run").order_by(AuditRecord.seq.desc())
            )
            .scalars()
            .first()
        )
    assert outcome == "interrupted"


def test_embeddings_of_another_model_are_refused(ctx: AppContext) -> None:
    create_gallery(ctx, "legacy", ctx.pipeline.model_id)
    with pytest.raises(ModelMismatchError):
        bulk_load_embeddings(
            ctx,
            "legacy",
            [rows(2)],
            actor="operator",
            model_id="some-other-model",
            source_system="x",
            placeholder_thumbnail=THUMB,
        )


@hyp_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(0, 30), max_size=4),
    batch_size=st.integers(1, 12),
    repeats=st.lists(st.integers(0, 29), max_size=6),
)
def test_any_chunking_and_batching_loads_each_face_once(
    settings: Settings, cuts: list[int], batch_size: int, repeats: list[int]
) -> None:
    """However the faces are cut into chunks and batches, and whatever repeats (a face given twice, in one
    batch or two), each image hash is loaded once and the index agrees with the database."""
    ctx = open_context(settings)
    try:
        name = f"g{len(cuts)}-{batch_size}-{len(repeats)}-{np.random.default_rng().integers(1e9)}"
        gallery_id = create_gallery(ctx, name, ctx.pipeline.model_id)
        data = rows(30, seed=batch_size)
        order = list(range(30)) + repeats
        ext = [data.external_ids[i] for i in order]
        hashes = [data.image_sha256[i] for i in order]
        vectors = data.embeddings[order]
        bounds = [0, *sorted(cuts), len(order)]
        chunks = [FaceRows(ext[a:b], hashes[a:b], vectors[a:b]) for a, b in itertools.pairwise(bounds)]
        report = load(ctx, name, chunks, batch_size=batch_size)
        assert report.loaded == 30 and report.skipped_duplicate == len(repeats)
        with ctx.db.read() as session:
            got = sorted(session.execute(select(Face.image_sha256).where(Face.gallery_id == gallery_id)).scalars())
        assert got == sorted(data.image_sha256)
        assert index_sync.check_index(ctx, gallery_id, repair=False).consistent
    finally:
        ctx.close()
