"""The subject score (issue 11): how a candidate subject's score combines its enrolled faces' scores, the
subject-level false-match rate, the per-subject evaluation protocol, and the list length counting subjects."""

from __future__ import annotations

import decimal
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facetrail.evaluation.embedding import EmbeddingSet
from facetrail.evaluation.identification import identify_subjects, split_subjects
from facetrail.faces.subject_score import (
    DEFAULT_RULE,
    MAX,
    RULES,
    check_rule,
    rule_headroom,
    subject_fmr,
    subject_score,
    subject_scores_matrix,
)

score = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
scores = st.lists(score, min_size=1, max_size=30)
rules = st.sampled_from(RULES)


def test_the_shipped_rule_is_max() -> None:
    assert DEFAULT_RULE == MAX


@given(scores, rules)
def test_a_one_face_subject_scores_as_its_face_and_no_rule_exceeds_max_plus_headroom(
    values: list[float], rule: str
) -> None:
    assert subject_score(values[:1], rule) == pytest.approx(values[0])
    result = subject_score(values, rule)
    assert result <= max(values) + rule_headroom(rule, len(values)) + 1e-9
    assert result >= min(values) - 1e-9


@given(scores, rules, st.randoms(use_true_random=False))
def test_the_order_of_the_faces_does_not_matter(values: list[float], rule: str, rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(values)
    rnd.shuffle(shuffled)
    assert subject_score(shuffled, rule) == pytest.approx(subject_score(values, rule), abs=1e-12)


@given(scores, rules, st.integers(min_value=0, max_value=29), st.floats(min_value=0.0, max_value=0.5))
def test_raising_a_face_score_never_lowers_the_subject_score(
    values: list[float], rule: str, which: int, bump: float
) -> None:
    raised = list(values)
    raised[which % len(values)] += bump
    assert subject_score(raised, rule) >= subject_score(values, rule) - 1e-12


@given(scores)
def test_max_is_the_best_face(values: list[float]) -> None:
    assert subject_score(values, MAX) == max(values)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=4),
    st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=25),
    rules,
    st.integers(min_value=0, max_value=2**31),
)
def test_the_matrix_form_agrees_with_the_scalar_rule(probes: int, groups: list[int], rule: str, seed: int) -> None:
    _, dense = np.unique(np.array(groups), return_inverse=True)
    sim = np.random.default_rng(seed).uniform(-1, 1, size=(probes, len(groups)))
    matrix, best = subject_scores_matrix(sim, dense, rule)
    for row in range(probes):
        for subject in range(dense.max() + 1):
            mine = sim[row, dense == subject]
            assert matrix[row, subject] == pytest.approx(subject_score(mine, rule), abs=1e-9)
            assert dense[best[row, subject]] == subject and sim[row, best[row, subject]] == mine.max()


@given(st.floats(min_value=0.0, max_value=1.0), st.integers(min_value=1, max_value=10_000))
def test_subject_fmr_is_one_minus_the_chance_that_no_face_scores_that_high(p: float, k: int) -> None:
    value = subject_fmr(p, k)
    assert 0.0 <= value <= 1.0
    assert value >= p - 1e-15  # never below one comparison's
    assert value <= min(1.0, k * p) + 1e-12  # never above the union bound
    with decimal.localcontext() as exact:  # the naive float form cancels: compare with 60 digits
        exact.prec = 60
        expected = float(1 - (1 - decimal.Decimal(p)) ** k)
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-40)
    assert subject_fmr(p, k + 1) >= value


def test_subject_fmr_has_no_cancellation_at_tiny_rates() -> None:
    assert subject_fmr(1e-12, 3) == pytest.approx(3e-12, rel=1e-6)
    assert subject_fmr(0.5, 0) == 0.5  # no face counts as one
    assert math.isclose(subject_fmr(1e-3, 5), 1 - 0.999**5)


def test_unknown_rules_are_refused() -> None:
    for bad in ("median", "lse", "lse0", "lse2", "lsex"):
        with pytest.raises(ValueError):
            check_rule(bad)
    assert check_rule("lse0.1") == "lse0.1"


def _embeddings(people: dict[str, list[str]], vectors: dict[str, np.ndarray]) -> EmbeddingSet:
    paths = [p for images in people.values() for p in images]
    return EmbeddingSet(
        "m@1", "d@1", paths, np.stack([vectors[p] for p in paths]).astype(np.float32), np.ones(len(paths), np.int32)
    )


def test_the_per_subject_split_enrols_all_but_the_last_photo_and_holds_out_every_fourth() -> None:
    people = {f"P{i:02d}": [f"P{i:02d}/{j}.jpg" for j in range(3 + i % 3)] for i in range(8)}
    people |= {"D1": ["D1/0.jpg"], "D2": ["D2/0.jpg", "D2/1.jpg"]}
    rng = np.random.default_rng(0)
    emb = _embeddings(people, {p: rng.normal(size=4) for images in people.values() for p in images})
    split = split_subjects(people, emb)
    assert split == split_subjects(people, emb)
    held = {"P03", "P07"}
    assert split.held_out_people == 2 and split.distractor_people == 2
    assert set(split.mated_people) == {f"P{i:02d}" for i in range(8)} - held
    assert all(probe == people[person][-1] for probe, person in zip(split.mated_probes, split.mated_people))
    assert not set(split.mated_probes) & set(split.gallery)
    assert set(split.nonmated_probes) == set(people["P03"][:3]) | set(people["P07"][:3])  # at most 3 each
    assert not set(split.nonmated_probes) & set(split.gallery)
    assert {"D1/0.jpg", "D2/0.jpg", "D2/1.jpg"} <= set(split.gallery)


def test_subject_lists_lift_a_mate_that_face_lists_bury_under_another_persons_photos() -> None:
    """A probe close to six photos of a stranger and then to its mate: the face list ranks the mate 7th, the
    subject list 2nd; rank-1 and the open-set figures are those of the max rule either way."""
    people = {"A": [f"A/{j}" for j in range(7)], "B": [f"B/{j}" for j in range(3)], "C": ["C/0", "C/1", "C/2"]}
    people |= {"D": ["D/0", "D/1", "D/2"]}  # 4th multi-photo person: held out (non-mated probes)
    e = np.eye(6)
    vectors = {f"A/{j}": e[0] for j in range(7)} | {f"C/{j}": e[2] for j in range(3)}
    vectors |= {f"D/{j}": e[3] for j in range(3)}
    vectors |= {"B/0": e[1], "B/1": e[1], "B/2": 0.6 * e[0] + 0.5 * e[1]}  # B's probe: nearer A's photos than B's
    for key, value in vectors.items():
        vectors[key] = value / np.linalg.norm(value)
    report = identify_subjects(people, _embeddings(people, vectors), rules=(MAX,))
    face, subject = report["face_list"], report["subject_list_max"]
    assert report["gallery_subjects"] == 3 and report["gallery_faces"] == 6 + 2 + 2
    assert face["rank_1"] < 1.0 and subject["rank_1"] == face["rank_1"]  # type: ignore[index]
    assert face["rank_5"] < subject["rank_5"] == 1.0  # type: ignore[index,operator]


def test_degraded_probes_without_a_face_are_misses_and_non_mated_ones_are_left_out() -> None:
    people = {f"P{i}": [f"P{i}/{j}" for j in range(3)] for i in range(4)}  # P3 is held out
    rng = np.random.default_rng(5)
    vectors = {p: rng.normal(size=8) for images in people.values() for p in images}
    clean = _embeddings(people, {k: v / np.linalg.norm(v) for k, v in vectors.items()})
    probes = EmbeddingSet(
        clean.model_id, clean.detector_id, list(clean.paths), clean.vectors.copy(), clean.faces.copy()
    )
    lost = [clean.paths.index("P0/2"), clean.paths.index("P3/0")]  # P0's mated probe, one non-mated probe
    probes.vectors[lost] = 0.0
    probes.faces[lost] = 0
    report = identify_subjects(people, clean, rules=(MAX, "lse0.02"), probes=probes)
    assert report["mated_probes_without_face"] == 1 and report["nonmated_probes_without_face_excluded"] == 1
    assert report["nonmated_probes"] == 2
    for key in ("face_list", "subject_list_max", "subject_list_lse0.02"):
        assert report[key]["rank_1"] < 0.667  # type: ignore[index]  (a lost probe is never at rank 1)
