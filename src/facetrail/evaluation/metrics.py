"""Verification and identification metrics on plain score arrays (no I/O, no models).

Conventions: a higher score means more similar; a comparison is *accepted* when its score is strictly
greater than the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((scores > threshold) == same))


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold that maximises accuracy on these pairs (midpoint between neighbouring scores).

    Ties go to the lowest such threshold, so the answer is deterministic.
    """
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], same[order].astype(np.int64)
    # Threshold just below s[0] accepts everything; just after s[k-1] rejects the k lowest scores.
    # correct(k) = (different pairs among the k lowest) + (same pairs among the rest).
    diff_below = np.concatenate([[0], np.cumsum(1 - y)])
    same_above = np.concatenate([[0], np.cumsum(y[::-1])])[::-1]
    correct = diff_below + same_above
    # Only cut between distinct scores: a cut inside a run of equal scores is not a threshold.
    valid = np.concatenate([[True], s[1:] > s[:-1], [True]])
    correct = np.where(valid, correct, -1)
    k = int(np.argmax(correct))
    if k == 0:
        return float(s[0] - 1e-6)
    if k == len(s):
        return float(s[-1])
    return float((s[k - 1] + s[k]) / 2.0)


@dataclass(frozen=True)
class FoldResult:
    accuracies: list[float]
    thresholds: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Sample standard deviation over folds (ddof=1); the LFW README's standard error is std/√folds."""
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> FoldResult:
    """LFW View 2: for each fold, pick the threshold on the other folds and measure accuracy on it."""
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        threshold = best_threshold(scores[train], same[train])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(scores[test], same[test], threshold))
    return FoldResult(accuracies, thresholds)


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false accept rate, true accept rate, threshold) for every distinct threshold, FAR ascending."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order].astype(bool)
    distinct = np.nonzero(np.diff(s))[0]
    cut = np.concatenate([distinct, [len(s) - 1]])
    tp = np.cumsum(y)[cut]
    fp = np.cumsum(~y)[cut]
    tar = np.concatenate([[0.0], tp / max(int(y.sum()), 1)])
    far = np.concatenate([[0.0], fp / max(int((~y).sum()), 1)])
    thresholds = np.concatenate([[np.inf], s[cut]])
    return far, tar, thresholds


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve = P(genuine score > impostor score), ties counting one half."""
    far, tar, _ = roc_curve(scores, same)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))  # trapezoids: ties count one half


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """The threshold t at which at most ``floor(far × n)`` impostor scores are > t.

    t is the (k+1)-th highest impostor score with k = floor(far × n), so accepting ``score > t`` admits at
    most k impostors. With fewer impostors than 1/far the rate cannot be resolved and t is the highest score.
    """
    imp = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    k = int(np.floor(far * imp.size + 1e-9))
    return float(imp[min(k, imp.size - 1)])


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    threshold = threshold_at_far(scores[~same], far)
    return float(np.mean(scores[same] > threshold))


# --- identification ---------------------------------------------------------------------------------


def mate_ranks(similarity: np.ndarray, mate_columns: np.ndarray) -> np.ndarray:
    """1-based rank of each probe's mate in its row of ``similarity`` (probes × gallery).

    Ties are counted pessimistically (a gallery entry scoring equal to the mate ranks above it). A probe
    whose mate column is −1 (its gallery photo could not be enrolled) gets rank ``gallery size + 1``.
    """
    rows = np.arange(similarity.shape[0])
    ranks = np.full(similarity.shape[0], similarity.shape[1] + 1, np.int64)
    ok = mate_columns >= 0
    mate_scores = similarity[rows[ok], mate_columns[ok]]
    ranks[ok] = (similarity[ok] >= mate_scores[:, None]).sum(axis=1)
    return ranks


def cmc(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """Identification rate at ranks 1..max_rank."""
    return np.array([float(np.mean(ranks <= r)) for r in range(1, max_rank + 1)])


def fnir_at_fpir(
    mated_top_scores: np.ndarray, mated_hit: np.ndarray, nonmated_top_scores: np.ndarray, fpir: float
) -> tuple[float, float]:
    """Open-set 1:N at rank 1: (FNIR, threshold) at the threshold giving FPIR ≤ ``fpir``.

    A non-mated search is a false positive when its top score is > t. A mated search is a false negative
    unless its mate is at rank 1 with score > t.
    """
    threshold = threshold_at_far(nonmated_top_scores, fpir)
    hits = mated_hit & (mated_top_scores > threshold)
    return float(1.0 - np.mean(hits)), threshold
