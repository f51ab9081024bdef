"""Embeddings for a model spec ('sface', 'dlib', 'fusion', 'onnx:/path'), with timing, for the eval commands.

Fusion is assembled from the cached SFace and dlib embeddings of the same chosen face with
``embed_dlib.fuse``: exactly what ``FusionEmbedder`` computes, without embedding anything twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrail.config import Settings, get_settings
from facetrail.evaluation.embedding import DEFAULT_CACHE_DIR, EmbeddingSet, embed_images
from facetrail.evaluation.lfw import Pair

WEIGHT_GRID = tuple(round(0.05 * step, 2) for step in range(21))


def settings_for(model: str | None, flip: bool | None, base: Settings | None = None) -> Settings:
    """The settings (from file and FACETRAIL_* environment) with the model and flip overridden where given."""
    base = base or get_settings()
    update: dict[str, object] = {}
    if model is not None:
        update["embedder"] = model
    if flip is not None:
        update["flip_augment"] = flip
    embedding = base.embedding.model_copy(update=update)
    return base.model_copy(update={"embedding": embedding})


@dataclass(frozen=True)
class EmbeddingRun:
    embeddings: EmbeddingSet
    computed: int  # images embedded now (the rest came from the cache)
    seconds: float

    @property
    def images_per_second(self) -> float | None:
        return self.computed / self.seconds if self.computed and self.seconds > 0 else None


def embed_for_model(
    images_dir: Path,
    paths: Sequence[str],
    model: str | None,
    *,
    flip: bool | None = None,
    fusion_weight: float | None = None,
    workers: int = 2,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    progress: Callable[[int, int], None] | None = None,
    base: Settings | None = None,
) -> EmbeddingRun:
    start = time.perf_counter()
    model = model or (base or get_settings()).embedding.embedder
    if model != "fusion":
        emb, computed = embed_images(
            images_dir, paths, settings_for(model, flip, base), cache_dir=cache_dir, workers=workers, progress=progress
        )
        return EmbeddingRun(emb, computed, time.perf_counter() - start)

    from facetrail.faces.embed_dlib import FUSION_WEIGHT, fuse, fusion_model_id

    weight = FUSION_WEIGHT if fusion_weight is None else fusion_weight
    sface, computed_a = embed_images(
        images_dir, paths, settings_for("sface", flip, base), cache_dir=cache_dir, workers=workers, progress=progress
    )
    dlib, computed_b = embed_images(
        images_dir, paths, settings_for("dlib", flip, base), cache_dir=cache_dir, workers=workers, progress=progress
    )
    found = sface.found & dlib.found
    vectors = fuse(sface.vectors, dlib.vectors, weight)
    vectors[~found] = 0.0
    fused = EmbeddingSet(
        fusion_model_id(sface.model_id, dlib.model_id, weight),
        sface.detector_id,
        list(sface.paths),
        vectors,
        np.where(found, sface.faces, 0).astype(np.int32),
    )
    # Both halves are needed per image, so a fused image costs one SFace plus one dlib embedding.
    return EmbeddingRun(fused, max(computed_a, computed_b), time.perf_counter() - start)


def choose_fusion_weight(
    sface: EmbeddingSet,
    dlib: EmbeddingSet,
    pair_a: Sequence[str],
    pair_b: Sequence[str],
    same: np.ndarray,
    grid: Sequence[float] = WEIGHT_GRID,
) -> tuple[float, list[dict[str, float]]]:
    """The SFace weight w maximising accuracy (best single threshold) on development pairs; ties → higher AUC.

    Meant for LFW View 1 (pairsDevTrain.txt), so the View 2 test folds never influence w.
    """
    from facetrail.evaluation.metrics import accuracy_at, best_threshold, roc_auc

    sa, sb, da, db = (s.subset(list(p)) for s, p in ((sface, pair_a), (sface, pair_b), (dlib, pair_a), (dlib, pair_b)))
    cos_s = np.einsum("ij,ij->i", sa.vectors, sb.vectors).astype(np.float64)
    cos_d = np.einsum("ij,ij->i", da.vectors, db.vectors).astype(np.float64)
    ok = sa.found & sb.found & da.found & db.found
    rows = []
    for w in grid:
        scores = np.where(ok, w * w * cos_s + (1 - w * w) * cos_d, -1.0)
        acc = accuracy_at(scores, same, best_threshold(scores, same))
        rows.append({"weight": float(w), "accuracy": acc, "auc": roc_auc(scores, same)})
    best = max(rows, key=lambda r: (round(r["accuracy"], 9), r["auc"]))
    return best["weight"], rows


def fusion_nested_kfold(
    sface: EmbeddingSet, dlib: EmbeddingSet, pairs: Sequence[Pair], grid: Sequence[float] = WEIGHT_GRID
) -> dict[str, object]:
    """LFW View 2 accuracy of the fusion with w *and* the threshold chosen on the training folds only.

    For each test fold, w is the grid value with the best accuracy on the other folds, then the threshold
    is the best one for that w on the other folds; both are applied unchanged to the test fold.
    """
    from facetrail.evaluation.metrics import accuracy_at, best_threshold
    from facetrail.evaluation.verification import pair_scores

    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    cos_s, none_s = pair_scores(sface, list(pairs))
    cos_d, none_d = pair_scores(dlib, list(pairs))
    no_face = none_s | none_d
    by_weight = {w: np.where(no_face, -1.0, w * w * cos_s + (1 - w * w) * cos_d) for w in grid}
    accuracies, weights = [], []
    for fold in np.unique(folds):
        train = folds != fold

        def train_accuracy(w: float, train: np.ndarray = train) -> float:
            s = by_weight[w][train]
            return accuracy_at(s, same[train], best_threshold(s, same[train]))

        w = max(grid, key=train_accuracy)
        s = by_weight[w]
        threshold = best_threshold(s[train], same[train])
        accuracies.append(accuracy_at(s[~train], same[~train], threshold))
        weights.append(float(w))
    return {
        "folds": len(accuracies),
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
        "fold_accuracies": accuracies,
        "fold_weights": weights,
        "no_face_pairs": int(no_face.sum()),
    }
