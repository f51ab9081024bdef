"""Evaluation: metric functions against independent brute-force answers, face choice, 1:N ranks, the
embedding cache, fusion arithmetic, and ``facetrail eval lfw`` end to end on a tiny LFW-format folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facetrail.errors import ModelMismatchError
from facetrail.evaluation.embedding import EmbeddingSet, cache_file, choose_eval_face
from facetrail.evaluation.identification import split_identification
from facetrail.evaluation.lfw import read_pairs
from facetrail.evaluation.metrics import (
    accuracy_at,
    best_threshold,
    cmc,
    fnir_at_fpir,
    kfold_accuracy,
    mate_ranks,
    roc_auc,
    tar_at_far,
    threshold_at_far,
)
from facetrail.evaluation.verification import NO_FACE_SCORE, pair_scores
from facetrail.faces.embed import cosine_similarity
from facetrail.faces.embed_dlib import fuse, fusion_model_id
from facetrail.faces.types import DetectedFace

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACETRAIL_SHARED_DATA", REPO.parent / "shared" / "data"))
LFW_IMAGES = SHARED / "lfw" / "images_deepfunneled"


def _scores(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = np.arange(n) < n // 2
    scores = np.where(same, rng.normal(0.6, 0.2, n), rng.normal(0.1, 0.2, n))
    return np.round(scores, 3), same  # rounding makes ties, which the metrics must handle


def _brute_best_accuracy(scores: np.ndarray, same: np.ndarray) -> float:
    candidates = np.concatenate([[scores.min() - 1], np.unique(scores)])
    return max(accuracy_at(scores, same, t) for t in candidates)


def test_best_threshold_reaches_the_brute_force_optimum() -> None:
    for seed in range(5):
        scores, same = _scores(seed)
        assert accuracy_at(scores, same, best_threshold(scores, same)) == pytest.approx(
            _brute_best_accuracy(scores, same)
        )


def test_kfold_picks_each_threshold_on_the_other_folds() -> None:
    scores, same = _scores(1, 600)
    folds = np.arange(600) % 3
    result = kfold_accuracy(scores, same, folds)
    for fold, (acc, threshold) in enumerate(zip(result.accuracies, result.thresholds, strict=True)):
        train = folds != fold
        # Independent check: the chosen threshold is optimal on the training folds only ...
        assert accuracy_at(scores[train], same[train], threshold) == pytest.approx(
            _brute_best_accuracy(scores[train], same[train])
        )
        # ... and the fold's accuracy is that threshold applied to the held-out fold.
        assert acc == accuracy_at(scores[~train], same[~train], threshold)
    assert result.mean == pytest.approx(np.mean(result.accuracies))
    assert result.std == pytest.approx(np.std(result.accuracies, ddof=1))


def test_perfectly_separated_scores() -> None:
    same = np.array([True] * 5 + [False] * 5)
    scores = np.where(same, 0.9, 0.1) + np.arange(10) * 1e-3
    assert roc_auc(scores, same) == 1.0
    assert kfold_accuracy(scores, same, np.arange(10) % 5).mean == 1.0
    assert tar_at_far(scores, same, 0.0) == 1.0


def test_auc_is_the_probability_a_genuine_score_beats_an_impostor() -> None:
    scores, same = _scores(2)
    genuine, impostor = scores[same], scores[~same]
    expected = (genuine[:, None] > impostor[None, :]).mean() + 0.5 * (genuine[:, None] == impostor[None, :]).mean()
    assert roc_auc(scores, same) == pytest.approx(expected)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert roc_auc(scores, same) == pytest.approx(sklearn_metrics.roc_auc_score(same, scores))


def test_tar_at_far_admits_at_most_the_allowed_impostors() -> None:
    impostor = np.arange(1000) / 1000.0  # 0.000 .. 0.999
    genuine = np.array([0.5, 0.95, 0.985, 0.9895, 0.991, 0.999, 1.2])
    scores = np.concatenate([genuine, impostor])
    same = np.arange(scores.size) < genuine.size
    # FAR 1e-2 allows 10 of 1000 impostors: the threshold is the 11th highest (0.989); 0.990..0.999 pass.
    assert threshold_at_far(impostor, 1e-2) == pytest.approx(0.989)
    assert np.sum(impostor > threshold_at_far(impostor, 1e-2)) == 10
    assert tar_at_far(scores, same, 1e-2) == pytest.approx(4 / 7)  # 0.9895, 0.991, 0.999, 1.2
    assert tar_at_far(scores, same, 1e-3) == pytest.approx(2 / 7)  # above 0.998: 0.999, 1.2


def test_mate_ranks_and_cmc_on_a_hand_made_matrix() -> None:
    similarity = np.array(
        [
            [0.9, 0.2, 0.1],  # mate 0 at rank 1
            [0.8, 0.7, 0.1],  # mate 1 at rank 2
            [0.5, 0.5, 0.4],  # mate 0 tied with 1: ranked pessimistically, rank 2
            [0.1, 0.2, 0.3],  # mate unknown (-1): beyond the gallery
        ]
    )
    ranks = mate_ranks(similarity, np.array([0, 1, 0, -1]))
    assert ranks.tolist() == [1, 2, 2, 4]
    assert cmc(ranks, 3).tolist() == [0.25, 0.75, 0.75]


def test_fnir_at_fpir() -> None:
    nonmated_top = np.arange(100) / 100.0  # FPIR 1e-2 allows 1 of 100: threshold 0.98
    mated_top = np.array([0.99, 0.995, 0.97, 0.999])
    mated_hit = np.array([True, True, True, False])  # the last one's top candidate is someone else
    fnir, threshold = fnir_at_fpir(mated_top, mated_hit, nonmated_top, 1e-2)
    assert threshold == pytest.approx(0.98)
    assert fnir == pytest.approx(2 / 4)


def test_eval_face_choice_prefers_a_large_face_near_the_centre() -> None:
    def face(x: float, y: float, size: float) -> DetectedFace:
        return DetectedFace((x, y, size, size), np.zeros((5, 2), np.float32), 0.9)

    centred, big_corner, small_centre = face(88, 88, 75), face(0, 0, 100), face(115, 115, 20)
    assert choose_eval_face([big_corner, centred, small_centre], 250, 250) == 1
    assert choose_eval_face([big_corner, small_centre], 250, 250) == 0  # the small one is under half the area
    assert choose_eval_face([], 250, 250) is None


def test_no_face_pairs_score_minus_one() -> None:
    vectors = np.eye(3, dtype=np.float32)
    emb = EmbeddingSet(
        "m@1", "d@1", ["a/a_0001.jpg", "a/a_0002.jpg", "b/b_0001.jpg"], vectors, np.array([1, 0, 1], np.int32)
    )
    from facetrail.evaluation.lfw import Pair

    scores, no_face = pair_scores(
        emb, [Pair("a/a_0001.jpg", "a/a_0002.jpg", True, 0), Pair("a/a_0001.jpg", "b/b_0001.jpg", False, 0)]
    )
    assert scores.tolist() == [NO_FACE_SCORE, 0.0]
    assert no_face.tolist() == [True, False]


def test_identification_split_is_deterministic_and_disjoint() -> None:
    people = {f"p{i:02d}": [f"p{i:02d}/{j}.jpg" for j in range(1 + i % 3)] for i in range(24)}
    paths = [p for images in people.values() for p in images]
    found = np.array([not p.endswith("p01/0.jpg") for p in paths])  # p01's first photo has no face
    emb = EmbeddingSet("m@1", "d@1", paths, np.zeros((len(paths), 2), np.float32), found.astype(np.int32))
    split = split_identification(people, emb)
    assert split == split_identification(people, emb)
    held_out_people = {p.split("/")[0] for p in split.nonmated_probes}
    assert held_out_people.isdisjoint(split.gallery_people)
    assert len(set(split.gallery_people)) == len(split.gallery_people)
    assert "p01/1.jpg" in split.gallery  # the first photo with a face is enrolled
    assert set(split.mated_people) <= set(split.gallery_people)
    assert not set(split.mated_probes) & set(split.gallery)


def test_embeddings_of_different_models_refuse_to_compare() -> None:
    v = np.ones(4, np.float32)
    assert cosine_similarity(v, v, "sface@aa", "sface@aa") == pytest.approx(1.0)
    with pytest.raises(ModelMismatchError):
        cosine_similarity(v, v, "sface@aa", "dlib-resnet-v1@bb")
    with pytest.raises(ModelMismatchError):  # same model name, other weights
        cosine_similarity(v, v, "sface@aa", "sface@ab")
    # The eval cache never mixes models or detectors either.
    folder = Path("/tmp/x")
    assert cache_file(folder, "sface@aa", "yunet@1", folder) != cache_file(folder, "sface@ab", "yunet@1", folder)
    assert cache_file(folder, "sface@aa", "yunet@1", folder) != cache_file(folder, "sface@aa", "retina@1", folder)


def test_fused_inner_product_is_the_weighted_cosine() -> None:
    rng = np.random.default_rng(3)
    a1, a2, b1, b2 = (v / np.linalg.norm(v) for v in rng.normal(size=(4, 128)))
    for w in (0.0, 0.5, 0.8, 1.0):
        fused = fuse(np.stack([a1, a2]), np.stack([b1, b2]), w)
        assert np.linalg.norm(fused, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
        assert fused[0] @ fused[1] == pytest.approx(w * w * (a1 @ a2) + (1 - w * w) * (b1 @ b2), abs=1e-5)
    assert fusion_model_id("s@1", "d@2", 0.8) != fusion_model_id("s@1", "d@2", 0.7)
    assert fusion_model_id("s@1", "d@2", 0.8).startswith("fusion-w0.80-s-d@")


# --- end to end on real LFW photos ------------------------------------------------------------------

TINY_PEOPLE = {  # person: image numbers copied from the shared LFW tree
    "Aaron_Peirsol": [1, 2, 3, 4],
    "Akhmed_Zakayev": [1, 2, 3],
    "Amber_Tamblyn": [1, 2],
    "Abba_Eban": [1],
    "Abdel_Madi_Shabneh": [1],
}
TINY_PAIRS = """2\t2
Aaron_Peirsol\t1\t2
Akhmed_Zakayev\t1\t3
Abba_Eban\t1\tAmber_Tamblyn\t1
Aaron_Peirsol\t3\tAbdel_Madi_Shabneh\t1
Aaron_Peirsol\t3\t4
Amber_Tamblyn\t1\t2
Akhmed_Zakayev\t2\tAaron_Peirsol\t4
Abdel_Madi_Shabneh\t1\tAmber_Tamblyn\t2
"""


@pytest.fixture()
def tiny_lfw(tmp_path: Path) -> Path:
    if not LFW_IMAGES.is_dir():
        pytest.skip(f"shared LFW data not found at {LFW_IMAGES} (set FACETRAIL_SHARED_DATA)")
    root = tmp_path / "lfw"
    for person, numbers in TINY_PEOPLE.items():
        (root / "images_deepfunneled" / person).mkdir(parents=True)
        for n in numbers:
            name = f"{person}/{person}_{n:04d}.jpg"
            shutil.copy(LFW_IMAGES / name, root / "images_deepfunneled" / name)
    (root / "pairs.txt").write_text(TINY_PAIRS)
    return root


@pytest.mark.lfw
def test_eval_lfw_end_to_end_and_cached_rerun(tiny_lfw: Path, tmp_path: Path) -> None:
    from facetrail.cli.main import app

    pairs = read_pairs(tiny_lfw / "pairs.txt")
    assert [p.fold for p in pairs] == [0] * 4 + [1] * 4
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [
        "eval",
        "lfw",
        "--data",
        str(tiny_lfw),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--workers",
        "1",
        "--json",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["pairs"] == 8
    assert summary["images"] == 11
    assert summary["images_embedded_now"] == 11
    assert summary["no_face_pairs"] == 0
    assert summary["model_id"].startswith("sface-2021dec-int8bq+flip@")
    # Real photos of clearly different people: SFace separates these eight pairs.
    assert summary["roc_auc"] == 1.0
    assert len(summary["fold_accuracies"]) == 2
    name = summary["model_id"].split("@")[0]
    for file in (f"lfw-{name}.json", f"lfw-roc-{name}.png", f"lfw-det-{name}.png"):
        assert (out / file).stat().st_size > 0
    assert (out / f"lfw-roc-{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["images_embedded_now"] == 0  # everything came from the cache
    assert again["roc_auc"] == summary["roc_auc"]
    assert again["fold_accuracies"] == summary["fold_accuracies"]


def test_eval_lfw_rejects_a_folder_without_pairs(tmp_path: Path) -> None:
    from facetrail.cli.main import app

    result = CliRunner().invoke(app, ["eval", "lfw", "--data", str(tmp_path), "--json"])
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"]["code"] == "bad_input"


def test_fusion_nested_kfold_with_only_w1_is_plain_sface_kfold() -> None:
    from facetrail.evaluation.lfw import Pair
    from facetrail.evaluation.runner import fusion_nested_kfold

    rng = np.random.default_rng(5)
    n_people, per = 40, 3
    paths = [f"p{i}/{j}.jpg" for i in range(n_people) for j in range(per)]
    centres = rng.normal(size=(n_people, 16))
    raw = np.repeat(centres, per, axis=0) + rng.normal(scale=1.0, size=(len(paths), 16))
    sface_vectors = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
    noise = rng.normal(size=(len(paths), 16))
    dlib_vectors = (noise / np.linalg.norm(noise, axis=1, keepdims=True)).astype(np.float32)
    faces = np.ones(len(paths), np.int32)
    sface = EmbeddingSet("s@1", "d@1", paths, sface_vectors, faces)
    dlib = EmbeddingSet("b@1", "d@1", paths, dlib_vectors, faces)
    pairs = []
    for i in range(n_people):
        pairs.append(Pair(f"p{i}/0.jpg", f"p{i}/1.jpg", True, i % 4))
        pairs.append(Pair(f"p{i}/2.jpg", f"p{(i + 1) % n_people}/2.jpg", False, i % 4))
    result = fusion_nested_kfold(sface, dlib, pairs, grid=[1.0])
    scores, _ = pair_scores(sface, pairs)
    plain = kfold_accuracy(scores, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))
    assert result["fold_accuracies"] == plain.accuracies
    assert result["fold_weights"] == [1.0] * 4
    # With the full grid, pure noise from "dlib" is never worth more weight than SFace on these pairs.
    assert all(w >= 0.5 for w in fusion_nested_kfold(sface, dlib, pairs)["fold_weights"])


def test_dlib_and_fusion_embedders_on_real_photos(pipeline) -> None:
    pytest.importorskip("dlib")
    from face_fixtures import BIDEN, OBAMA, OBAMA2
    from facetrail.faces.embed_dlib import FUSION_WEIGHT, DlibEmbedder, FusionEmbedder

    dlib_embedder = DlibEmbedder()
    fusion = FusionEmbedder(pipeline.embedder, dlib=dlib_embedder)
    assert dlib_embedder.model_id.startswith("dlib-resnet-v1@") and fusion.dim == pipeline.embedder.dim + 128
    vectors = {}
    for name, path in (("obama", OBAMA), ("obama2", OBAMA2), ("biden", BIDEN)):
        image = pipeline.decode_path(path)
        face = pipeline.detect(image)[0]
        assert dlib_embedder.aligned_crop(image.pixels, face).shape == (150, 150, 3)
        vectors[name] = (
            pipeline.embedder.embed(image.pixels, [face])[0],
            dlib_embedder.embed(image.pixels, [face])[0],
            fusion.embed(image.pixels, [face])[0],
        )
    for s, d, f in vectors.values():
        assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5) and np.linalg.norm(f) == pytest.approx(1.0, abs=1e-5)
    w2 = FUSION_WEIGHT**2
    for a, b in (("obama", "obama2"), ("obama", "biden")):
        expected = w2 * vectors[a][0] @ vectors[b][0] + (1 - w2) * vectors[a][1] @ vectors[b][1]
        assert vectors[a][2] @ vectors[b][2] == pytest.approx(expected, abs=1e-5)
    # dlib, too, scores the same person above two different people
    assert vectors["obama"][1] @ vectors["obama2"][1] > vectors["obama"][1] @ vectors["biden"][1]
