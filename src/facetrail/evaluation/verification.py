"""LFW View 2 verification: scores for the 6,000 pairs and the standard 10-fold protocol."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facetrail.evaluation.embedding import EmbeddingSet
from facetrail.evaluation.lfw import Pair
from facetrail.evaluation.metrics import kfold_accuracy, roc_auc, roc_curve, tar_at_far

# A pair in which either image has no detected face gets the lowest possible cosine. It is therefore
# rejected: an error for a same-person pair, a correct answer for a different-person pair, which is what
# an operator would get (no face, no match). Such pairs are counted and reported, never dropped.
NO_FACE_SCORE = -1.0


def pair_scores(emb: EmbeddingSet, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """(scores, no_face mask) for the pairs, in order."""
    where = emb.index()
    a = np.array([where[p.a] for p in pairs])
    b = np.array([where[p.b] for p in pairs])
    scores = np.einsum("ij,ij->i", emb.vectors[a], emb.vectors[b]).astype(np.float64)
    no_face = ~(emb.found[a] & emb.found[b])
    scores[no_face] = NO_FACE_SCORE
    return scores, no_face


@dataclass
class VerificationReport:
    model_id: str
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    auc: float
    tar_at_far: dict[str, float]
    pairs: int
    no_face_pairs: int
    no_face_same_pairs: int
    no_face_images: int
    images: int
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "model_id": self.model_id,
            "protocol": f"LFW View 2 (pairs.txt): {len(self.fold_accuracies)} folds; each fold's threshold is "
            "chosen on the other folds",
            "accuracy_mean": round(self.accuracy_mean, 5),
            "accuracy_std": round(self.accuracy_std, 5),
            "fold_accuracies": [round(a, 5) for a in self.fold_accuracies],
            "fold_thresholds": [round(t, 5) for t in self.fold_thresholds],
            "roc_auc": round(self.auc, 6),
            "tar_at_far": {k: round(v, 5) for k, v in self.tar_at_far.items()},
            "pairs": self.pairs,
            "no_face_pairs": self.no_face_pairs,
            "no_face_same_pairs": self.no_face_same_pairs,
            "no_face_scoring": f"score {NO_FACE_SCORE}: rejected (an error if same person, correct if different)",
            "images": self.images,
            "no_face_images": self.no_face_images,
            **self.extra,
        }


def verify_pairs(emb: EmbeddingSet, pairs: list[Pair]) -> tuple[VerificationReport, np.ndarray, np.ndarray]:
    """The report, and (scores, same) for plotting."""
    scores, no_face = pair_scores(emb, pairs)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    result = kfold_accuracy(scores, same, folds)
    report = VerificationReport(
        model_id=emb.model_id,
        accuracy_mean=result.mean,
        accuracy_std=result.std,
        fold_accuracies=result.accuracies,
        fold_thresholds=result.thresholds,
        auc=roc_auc(scores, same),
        tar_at_far={f"{far:g}": tar_at_far(scores, same, far) for far in (1e-2, 1e-3)},
        pairs=len(pairs),
        no_face_pairs=int(no_face.sum()),
        no_face_same_pairs=int((no_face & same).sum()),
        no_face_images=int((~emb.found).sum()),
        images=len(emb.paths),
    )
    return report, scores, same


def roc_points(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    far, tar, _ = roc_curve(scores, same)
    return far, tar
