"""What a similarity score means: the false-match rate estimated from impostor comparisons.

Each model ships a table (``faces/calibration/<model name>.json``) measured on LFW impostor pairs by
``facetrail eval calibrate`` (docs/calibration.md says how). The estimated FMR at score s is the fraction
of impostor comparisons scoring ≥ s. Beyond the table's resolution the estimate is reported as an upper
bound ("< 1 in N"), never as zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from facetrail.errors import ModelError


@dataclass(frozen=True)
class Calibration:
    model_id: str
    impostor_comparisons: int
    genuine_comparisons: int
    scores: np.ndarray  # ascending
    fmr: np.ndarray  # non-increasing; fmr[i] = P(impostor score ≥ scores[i])
    source: str

    @property
    def resolution(self) -> float:
        return 1.0 / max(self.impostor_comparisons, 1)

    def fmr_at(self, score: float) -> float:
        """Estimated false-match rate at this score, floored at the table's resolution."""
        if score <= self.scores[0]:
            return float(self.fmr[0])
        if score >= self.scores[-1]:
            return self.resolution
        value = float(np.interp(score, self.scores, self.fmr))
        return max(value, self.resolution)

    def threshold_for(self, target_fmr: float) -> float:
        """The lowest score whose estimated FMR is ≤ target."""
        ok = np.nonzero(self.fmr <= target_fmr)[0]
        if ok.size == 0:
            return float(self.scores[-1])
        return float(self.scores[ok[0]])

    def describe(self, score: float) -> str:
        fmr = self.fmr_at(score)
        if fmr <= self.resolution:
            return f"fewer than 1 in {self.impostor_comparisons:,} different-person comparisons score this high"
        return f"about 1 in {round(1 / fmr):,} different-person comparisons score this high (FMR ≈ {fmr:.1e})"

    def to_json(self) -> dict[str, object]:
        return {
            "model_id": self.model_id,
            "impostor_comparisons": self.impostor_comparisons,
            "genuine_comparisons": self.genuine_comparisons,
            "source": self.source,
            "table": [[round(float(s), 5), float(f)] for s, f in zip(self.scores, self.fmr, strict=True)],
        }


def build_calibration(
    model_id: str, impostor_scores: np.ndarray, genuine_count: int, source: str, points: int = 400
) -> Calibration:
    """A compact table from raw impostor scores: dense where FMR is small (log-spaced in FMR)."""
    scores = np.sort(np.asarray(impostor_scores, dtype=np.float64))
    n = scores.size
    if n < 100:
        raise ValueError("need at least 100 impostor scores to calibrate")
    fmrs = np.unique(np.concatenate([np.logspace(np.log10(1.0 / n), 0, points), [0.5, 0.1, 1e-2, 1e-3, 1e-4]]))
    fmrs = fmrs[fmrs >= 1.0 / n]
    thresholds = np.array([scores[max(0, min(n - 1, int(np.ceil(n * (1 - f)))))] for f in fmrs])
    table = sorted({(float(t), float((scores >= t).sum() / n)) for t in thresholds})
    s = np.array([t for t, _ in table])
    f = np.minimum.accumulate(np.array([v for _, v in table]))
    return Calibration(model_id, n, genuine_count, s, f, source)


@lru_cache(maxsize=8)
def load_calibration(model_id: str) -> Calibration:
    name = model_id.split("@")[0]
    try:
        text = (resources.files("facetrail.faces") / "calibration" / f"{name}.json").read_text()
    except FileNotFoundError:
        raise ModelError(
            f"no calibration table ships for model {name}; run 'facetrail eval calibrate' to make one"
        ) from None
    data = json.loads(text)
    if data["model_id"] != model_id:
        raise ModelError(f"the calibration table was measured for {data['model_id']}, not {model_id}: weights differ")
    table = np.array(data["table"], dtype=np.float64)
    return Calibration(
        data["model_id"],
        int(data["impostor_comparisons"]),
        int(data.get("genuine_comparisons", 0)),
        table[:, 0],
        table[:, 1],
        str(data.get("source", "")),
    )
