"""The quality expectation table: what a probe's measured quality predicts, from a degraded-probe sweep.

``facetrail eval quality-table --sweep DIR`` builds it from ``degrade-sweep-scores.npz`` and writes it into the
package (``faces/calibration/quality-<model>.json``), where ``faces.quality_expectations`` reads it for the
verdict. Guarantees:
* Nothing in it is typed by hand: every figure is computed here from the sweep's pair scores and the quality
  measured on each degraded probe by the production pipeline.
* One operational threshold per model: the accuracy-maximising threshold on the sweep's clean-probe pairs
  (what "LFW accuracy" means), applied unchanged to every bin, so a bin's accuracy says how far a probe of
  that quality falls from clean.
* Eye-distance bins pool the clean level and the pure down-scaling levels (``eye=N``); sharpness bins pool the
  clean, blur, motion-blur and JPEG levels. Other degradations (occlusion, rotation, low light) would confound
  a single measure and stay out of both. A bin with fewer than ``MIN_PAIRS`` pairs is left out. Probes in which
  no face was found cannot be binned; their share is reported per level.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from facetrail.evaluation.metrics import accuracy_at, best_threshold

EYE_EDGES = (0.0, 10.0, 14.0, 20.0, 28.0, 38.0, 1e9)
SHARPNESS_EDGES = (0.0, 10.0, 20.0, 40.0, 80.0, 1e12)
MIN_PAIRS = 40
EYE_STEPS = ("eye",)
SHARPNESS_STEPS = ("blur", "motion", "jpeg")


def _only(spec: str, allowed: Sequence[str]) -> bool:
    if spec == "clean":
        return True
    return all(part.split("=")[0] in allowed for part in spec.split("+"))


def _bins(
    values: np.ndarray, scores: np.ndarray, same: np.ndarray, edges: Sequence[float], threshold: float
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for low, high in itertools.pairwise(edges):
        inside = (values >= low) & (values < high)
        n = int(inside.sum())
        if n < MIN_PAIRS:
            continue
        genuine = inside & same
        rows.append(
            {
                "low": float(low),
                "high": float(high) if high < 1e8 else None,
                "pairs": n,
                "accuracy": round(accuracy_at(scores[inside], same[inside], threshold), 5),
                "true_accept": round(float((scores[genuine] > threshold).mean()), 5) if genuine.any() else None,
                "median": round(float(np.median(values[inside])), 2),
            }
        )
    for row in rows:  # JSON has no infinity: an open top bin has high = None
        if row["high"] is None:
            row.pop("high")
    return rows


def build_quality_table(
    model_id: str,
    specs: Sequence[str],
    same: np.ndarray,
    folds: np.ndarray,
    scores: dict[str, dict[str, np.ndarray]],
    quality: dict[str, dict[str, np.ndarray]],
    *,
    source: str,
    label: str | None = None,
) -> dict[str, object]:
    """The table for one model (``label``: its key in ``scores``; default the only one) of a sweep."""
    del folds  # one threshold for all: the table describes the operating point, not a k-fold estimate
    key = label or next(iter(scores[specs[0]]))
    if "clean" not in specs:
        raise ValueError("the sweep has no clean level: the operating threshold is set on clean probes")
    clean_scores = scores["clean"][key]
    threshold = best_threshold(clean_scores, same)

    def pooled(allowed: Sequence[str], field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vs, ss, ys = [], [], []
        for spec in specs:
            if _only(spec, allowed) and key in scores[spec]:
                values = quality[spec][field]
                ok = ~np.isnan(values)
                vs.append(values[ok])
                ss.append(scores[spec][key][ok])
                ys.append(same[ok])
        return np.concatenate(vs), np.concatenate(ss), np.concatenate(ys)

    eye = _bins(*pooled(EYE_STEPS, "eye_distance_px"), EYE_EDGES, threshold)
    sharp = _bins(*pooled(SHARPNESS_STEPS, "sharpness"), SHARPNESS_EDGES, threshold)
    levels = []
    for spec in specs:
        if key not in scores[spec]:
            continue
        found = ~np.isnan(quality[spec]["eye_distance_px"])
        levels.append(
            {
                "degrade": spec,
                "accuracy": round(accuracy_at(scores[spec][key], same, threshold), 5),
                "no_face_probes": round(float(1.0 - found.mean()), 5),
            }
        )
    return {
        "model_id": model_id,
        "source": source,
        "threshold": round(float(threshold), 5),
        "clean_accuracy": round(accuracy_at(clean_scores, same, threshold), 5),
        "pairs_per_level": len(same),
        "eye_distance": eye,
        "sharpness": sharp,
        "levels": levels,
    }
