"""Impostor (different-person) score distribution over every LFW image pair, for the calibration table."""

from __future__ import annotations

import numpy as np

from facetrail.faces.calibration import Calibration, build_calibration


def impostor_scores(vectors: np.ndarray, labels: np.ndarray, block: int = 1024) -> tuple[np.ndarray, int]:
    """Cosine scores of all unordered pairs of rows with different labels, and the same-label pair count.

    Computed block by block (rows i..i+block against rows after i) so that the n×n matrix never exists.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    labels = np.asarray(labels)
    n = vectors.shape[0]
    parts: list[np.ndarray] = []
    genuine = 0
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = vectors[start:stop] @ vectors[start:].T  # (b, n - start)
        rows = np.arange(stop - start)[:, None]
        cols = np.arange(n - start)[None, :]
        upper = cols > rows  # each unordered pair once, no self-pairs
        different = labels[start:stop, None] != labels[None, start:]
        genuine += int((upper & ~different).sum())
        parts.append(sims[upper & different])
    return np.concatenate(parts) if parts else np.zeros(0, np.float32), genuine


def calibrate(model_id: str, vectors: np.ndarray, labels: np.ndarray, source: str) -> Calibration:
    scores, genuine = impostor_scores(vectors, labels)
    return build_calibration(model_id, scores, genuine, source)
