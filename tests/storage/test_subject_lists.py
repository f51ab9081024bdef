"""Candidate lists of subjects, not faces (issue 11), on SQLite and PostgreSQL: each enrolled person appears at
most once, scored over all of their faces, the list length counts subjects however many photos crowd the top,
and the subject-level false-match rate accounts for the subject's number of faces."""

from __future__ import annotations

import hashlib
import itertools

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from index_helpers import GALLERY_PHOTOS, create_gallery, enroll_photos
from sqlalchemy import select
from test_search import CLI_PURPOSE, investigator_token
from test_search import cli as cli

from face_fixtures import OBAMA, OBAMA2
from facetrail.context import AppContext
from facetrail.faces.calibration import load_calibration
from facetrail.faces.subject_score import subject_fmr
from facetrail.gallery import index_sync
from facetrail.gallery.search import candidate_faces, search_gallery, subject_hits
from facetrail.storage.models import Face, SearchRecord, Subject

GALLERY_NUMBERS = itertools.count()
PURPOSE = {"case_number": "2026-000911", "offense": "PC 211", "reason": "CCTV still; several booking photos each"}


def add_faces(ctx: AppContext, gallery_id: int, subject: str, vectors: np.ndarray) -> list[int]:
    """Faces with the given embeddings for one subject (created if new), committed, then indexed."""
    thumb = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    ids = []
    with ctx.db.transaction() as session:
        row = session.execute(
            select(Subject).where(Subject.gallery_id == gallery_id, Subject.external_id == subject)
        ).scalar_one_or_none()
        if row is None:
            row = Subject(gallery_id=gallery_id, external_id=subject, name=subject.title())
            session.add(row)
            session.flush()
        for vector in vectors:
            face = Face(
                gallery_id=gallery_id,
                subject_id=row.id,
                image_sha256=hashlib.sha256(vector.astype("<f4").tobytes()).hexdigest(),
                source_system="tests",
                enrolled_by="t",
                box={"x": 0},
                quality={},
                model_id=ctx.pipeline.model_id,
                embedding=vector.astype("<f4").tobytes(),
                thumbnail=thumb,
            )
            session.add(face)
            session.flush()
            ids.append(face.id)
    index_sync.add_faces(ctx, gallery_id, ids, np.asarray(vectors, np.float32))
    return ids


def unit_vectors(rng: np.random.Generator, n: int, dim: int, near: np.ndarray | None = None) -> np.ndarray:
    v = rng.normal(size=(n, dim))
    if near is not None:
        v = near[None, :] * 8.0 + v * 0.5  # close to ``near``: high cosine with it
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def probe_vector(ctx: AppContext) -> np.ndarray:
    face, _ = ctx.pipeline.analyze_one(ctx.pipeline.decode_path(OBAMA2))
    assert face.embedding is not None
    return face.embedding.vector.astype(np.float32)


def test_a_subject_with_several_photos_is_one_candidate_scored_over_all_of_them(ctx: AppContext) -> None:
    gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, gallery_id, GALLERY_PHOTOS)  # OBAMA: one photo
    probe = probe_vector(ctx)
    rng = np.random.default_rng(7)
    extra = add_faces(ctx, gallery_id, "OBAMA", unit_vectors(rng, 4, probe.size, near=probe))
    result = search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", candidates=5, **PURPOSE)
    subjects = [c.subject_external_id for c in result.candidates]
    assert subjects[0] == "OBAMA" and len(subjects) == len(set(subjects)) == 5
    top = result.candidates[0]
    assert top.faces_enrolled == 5 and len(top.faces) == 5 and set(extra) < {f.face_id for f in top.faces}
    assert top.similarity == pytest.approx(max(f.similarity for f in top.faces), abs=1e-6)  # rule: max
    assert top.face_id == top.faces[0].face_id  # the best face is the one shown, and the key of reviews
    assert top.faces_above_floor == sum(f.similarity >= ctx.settings.server.similarity_floor for f in top.faces)
    calibration = load_calibration(ctx.pipeline.model_id)
    assert top.face_fmr == calibration.fmr_at(top.similarity)
    assert top.estimated_fmr == pytest.approx(subject_fmr(calibration.fmr_at(top.similarity), 5))
    assert top.estimated_fmr > top.face_fmr  # five photos, five chances for a stranger
    assert "5 enrolled photos" in top.score_meaning
    others = result.candidates[1:]
    assert all(c.faces_enrolled == 1 and c.estimated_fmr == pytest.approx(c.face_fmr) for c in others)
    with ctx.db.read() as session:
        stored = session.execute(select(SearchRecord)).scalar_one().candidates
    assert [c["subject_external_id"] for c in stored] == subjects
    assert stored[0]["faces_enrolled"] == 5 and stored[0]["score_rule"] == "max"
    assert [f["face_id"] for f in stored[0]["faces"]] == [f.face_id for f in top.faces]
    data = result.to_dict()["candidates"][0]
    assert data["faces_enrolled"] == 5 and len(data["faces"]) == 5
    # expected false matches: one comparison's FMR times the gallery's faces (not the subject-level FMR)
    assert result.to_dict()["candidates"][0]["expected_false_matches"] == float(
        f"{top.face_fmr * result.gallery_size:.3g}"
    )


def test_the_list_counts_subjects_even_when_one_persons_photos_fill_the_top(ctx: AppContext) -> None:
    gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, gallery_id, GALLERY_PHOTOS)
    probe = probe_vector(ctx)
    rng = np.random.default_rng(3)
    add_faces(ctx, gallery_id, "OBAMA", unit_vectors(rng, 40, probe.size, near=probe))  # 41 photos of one man
    result = search_gallery(ctx, OBAMA2, gallery="bookings", actor="t", candidates=4, **PURPOSE)
    subjects = [c.subject_external_id for c in result.candidates]
    assert len(subjects) == 4 == len(set(subjects)) and subjects[0] == "OBAMA"
    assert result.candidates[0].faces_enrolled == 41
    scores = [c.similarity for c in result.candidates]
    assert scores == sorted(scores, reverse=True)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=12),
    k=st.integers(min_value=2, max_value=8),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_subject_hits_are_the_k_best_distinct_subjects_by_their_best_face(
    ctx: AppContext, sizes: list[int], k: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    dim = 16
    gallery_id = create_gallery(ctx, f"g{next(GALLERY_NUMBERS)}", ctx.pipeline.model_id)  # one per example
    faces: dict[str, np.ndarray] = {}
    for i, n in enumerate(sizes):
        faces[f"S{i}"] = unit_vectors(rng, n, dim)
        add_faces(ctx, gallery_id, f"S{i}", faces[f"S{i}"])
    query = unit_vectors(rng, 1, dim)[0]
    index = index_sync.get_gallery_index(ctx, gallery_id, actor="t")
    hits = subject_hits(ctx, index, gallery_id, query, k, load_calibration(ctx.pipeline.model_id))
    best = {name: float((vectors @ query).max()) for name, vectors in faces.items()}
    expected = sorted(best, key=lambda name: -best[name])[: min(k, len(sizes))]
    assert [h.subject_external_id for h in hits] == expected
    for hit in hits:
        assert len(hit.faces) == sizes[int(hit.subject_external_id[1:])]  # every face of the subject scored
        assert hit.score == pytest.approx(best[hit.subject_external_id], abs=1e-5)
        assert hit.fmr == pytest.approx(subject_fmr(hit.face_fmr, len(hit.faces)))


def test_the_one_to_one_check_scores_the_subject_over_all_of_its_faces(ctx: AppContext) -> None:
    from facetrail.gallery.search import search_subject

    gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, gallery_id, {"OBAMA": OBAMA, "BIDEN": GALLERY_PHOTOS["BIDEN"]})
    probe = probe_vector(ctx)
    add_faces(ctx, gallery_id, "OBAMA", unit_vectors(np.random.default_rng(1), 2, probe.size, near=probe))
    pipeline = ctx.pipeline
    image = pipeline.decode_path(OBAMA2)
    face, count = pipeline.analyze_one(image)
    result = search_subject(
        ctx,
        OBAMA2.read_bytes(),
        gallery="bookings",
        subject="OBAMA",
        actor="t",
        analyzed=(image, face, count),
        user_id=None,
        unit_id=None,
        legal_basis="warrant",
        **PURPOSE,
    )
    [candidate] = result.candidates
    assert candidate.subject_external_id == "OBAMA" and candidate.faces_enrolled == 3
    assert candidate.similarity == max(f.similarity for f in candidate.faces)


def test_a_search_recorded_before_subject_lists_still_reads_as_one_face_per_candidate() -> None:
    old = {"rank": 1, "face_id": 9, "subject_id": 3, "subject_external_id": "X", "similarity": 0.61, "fmr": 1e-4}
    assert candidate_faces(old, 0.3) == (1, 1, [{"face_id": 9, "similarity": 0.61}])
    assert candidate_faces(old, 0.7) == (1, 0, [{"face_id": 9, "similarity": 0.61}])


def test_cli_search_lists_subjects_and_masks_their_faces_until_released(ctx: AppContext, cli) -> None:  # type: ignore[no-untyped-def]
    import json

    gallery_id = create_gallery(ctx, "bookings", ctx.pipeline.model_id)
    enroll_photos(ctx, ctx.pipeline, gallery_id, GALLERY_PHOTOS)
    probe = probe_vector(ctx)
    add_faces(ctx, gallery_id, "OBAMA", unit_vectors(np.random.default_rng(2), 3, probe.size, near=probe))
    token = investigator_token(ctx)
    args = ["search", OBAMA2, "--gallery", "bookings", *CLI_PURPOSE, "--token", token, "--candidates", "4"]
    text = cli(*args, "--faces")
    assert text.exit_code == 0, text.output
    assert "1 candidate subject(s) for human review" in text.output  # OBAMA once; the others under the floor
    data = json.loads(cli(*args, "--json").output)
    assert len(data["candidates"]) == data["candidates_shown"] == 1
    for candidate in data["candidates"]:  # the investigator: "under review", no faces, no photo count
        assert candidate["subject_external_id"] == "under review"
        assert candidate["faces"] == [] and candidate["faces_enrolled"] is None
    with ctx.db.read() as session:
        stored = session.get(SearchRecord, data["search_id"])
        assert stored is not None
        rows = stored.candidates
    subjects = [c["subject_external_id"] for c in rows]
    assert subjects[0] == "OBAMA" and len(subjects) == len(set(subjects)) == 4 and rows[0]["faces_enrolled"] == 4
