"""A subject's score from the scores of all of its enrolled faces, and what that score means.

Contract:
- ``subject_score(scores, rule)`` is a pure function of the subject's face scores (any order, at least one):
  with the shipped rule ``max`` it is the best face's score. Every rule here scores a one-face subject
  exactly as its face, is monotone (raising a face's score never lowers the subject's) and never exceeds
  the best face's score plus ``rule_headroom(rule, k)``.
- ``subject_fmr(face_fmr, k)`` is the false-match rate of a subject with ``k`` enrolled faces at a score whose
  face-level FMR is ``face_fmr``: the chance that the best of k different-person comparisons scores that high,
  1 − (1 − FMR)^k. It is exact for independent comparisons and an upper bound when a stranger's k photos
  score alike (positively dependent scores make the maximum *less* extreme), which they do; it is never
  below the face-level FMR. docs/calibration.md gives the derivation and its check on LFW.

The rule was chosen by measurement (docs/accuracy.md, "Per-subject candidate lists"):
``facetrail eval identify --per-subject`` compares the rules below on LFW.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX = "max"
MEAN_TOP2 = "mean_top2"
MEAN_TOP3 = "mean_top3"
SOFTMAX_PREFIX = "lse"  # "lse0.02": T·log Σ exp(s/T) − T·log k_top ... see _lse
DEFAULT_RULE = MAX
RULES = (MAX, MEAN_TOP2, MEAN_TOP3, "lse0.02", "lse0.05")


def check_rule(rule: str) -> str:
    if rule in (MAX, MEAN_TOP2, MEAN_TOP3):
        return rule
    if rule.startswith(SOFTMAX_PREFIX):
        try:
            temperature = float(rule[len(SOFTMAX_PREFIX) :])
        except ValueError:
            temperature = -1.0
        if 0.0 < temperature <= 1.0:
            return rule
    raise ValueError(f"unknown subject score rule {rule!r}: one of max, mean_top2, mean_top3, lse<T> (0 < T ≤ 1)")


def _sorted_desc(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.sort(np.asarray(scores, dtype=np.float64).ravel())[::-1]
    if values.size == 0:
        raise ValueError("a subject needs at least one face score")
    return values


def subject_score(scores: Sequence[float] | np.ndarray, rule: str = DEFAULT_RULE) -> float:
    """The subject's score under ``rule`` (see the module docstring)."""
    values = _sorted_desc(scores)
    if rule == MAX:
        return float(values[0])
    if rule in (MEAN_TOP2, MEAN_TOP3):
        # a subject with fewer faces than the rule's k is scored on the faces it has (one face: its score)
        return float(values[: 2 if rule == MEAN_TOP2 else 3].mean())
    check_rule(rule)
    temperature = float(rule[len(SOFTMAX_PREFIX) :])
    return float(values[0] + temperature * np.log(np.exp((values - values[0]) / temperature).sum()))


def rule_headroom(rule: str, faces: int) -> float:
    """How far the subject's score may exceed its best face's: 0 for max and the means, T·log k for lse<T>."""
    if rule.startswith(SOFTMAX_PREFIX):
        return float(rule[len(SOFTMAX_PREFIX) :]) * math.log(max(faces, 1))
    return 0.0


def subject_scores_matrix(
    similarity: np.ndarray, groups: np.ndarray, rule: str = DEFAULT_RULE
) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject scores for every row of ``similarity`` (probes × faces).

    ``groups[j]`` is the subject (0..n_subjects-1) of face column j. Returns (probes × subjects scores,
    probes × subjects column of each subject's best face). Used by the evaluation; the search scores the few
    retrieved subjects with ``subject_score`` directly.
    """
    groups = np.asarray(groups, dtype=np.int64)
    order = np.argsort(groups, kind="stable")
    sim = np.asarray(similarity, dtype=np.float64)[:, order]
    grp = groups[order]
    starts = np.concatenate([[0], np.nonzero(np.diff(grp))[0] + 1])
    n_subjects = len(starts)
    out = np.empty((sim.shape[0], n_subjects))
    best_col = np.empty((sim.shape[0], n_subjects), dtype=np.int64)
    best = np.maximum.reduceat(sim, starts, axis=1)
    # column of the best face of each subject: first column reaching the subject's maximum
    is_best = sim == np.repeat(best, np.diff(np.concatenate([starts, [sim.shape[1]]])), axis=1)
    for row in range(sim.shape[0]):
        first = np.maximum.reduceat(np.where(is_best[row], -np.arange(sim.shape[1]), -sim.shape[1]), starts)
        best_col[row] = order[-first]
    if rule == MAX:
        return best, best_col
    check_rule(rule)
    sizes = np.diff(np.concatenate([starts, [sim.shape[1]]]))
    if rule.startswith(SOFTMAX_PREFIX):
        temperature = float(rule[len(SOFTMAX_PREFIX) :])
        shifted = np.exp((sim - np.repeat(best, sizes, axis=1)) / temperature)
        out = best + temperature * np.log(np.add.reduceat(shifted, starts, axis=1))
        return out, best_col
    k = 2 if rule == MEAN_TOP2 else 3
    # top-k per subject: sort each row within subjects (subject ascending, score descending)
    rank_in_group = np.empty_like(sim, dtype=np.int64)
    seg = np.repeat(np.arange(n_subjects), sizes)
    for row in range(sim.shape[0]):
        within = np.lexsort((-sim[row], seg))
        ranks = np.empty(sim.shape[1], dtype=np.int64)
        ranks[within] = np.arange(sim.shape[1]) - np.repeat(starts, sizes)
        rank_in_group[row] = ranks
    keep = rank_in_group < k
    total = np.add.reduceat(np.where(keep, sim, 0.0), starts, axis=1)
    count = np.minimum(sizes, k)[None, :]
    return total / count, best_col


def subject_fmr(face_fmr: float, faces: int) -> float:
    """1 − (1 − face_fmr)^faces, computed without cancellation; ``faces`` < 1 counts as one face."""
    p = min(max(float(face_fmr), 0.0), 1.0)
    if p >= 1.0:
        return 1.0
    return float(-math.expm1(max(int(faces), 1) * math.log1p(-p)))
