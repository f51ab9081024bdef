"""What a probe's measured quality predicts, in words, from the table ``facetrail eval quality-table`` ships.

Guarantees:
* The figures come only from ``faces/calibration/quality-<model name>.json``, which the command generates from
  a degraded-probe sweep (docs/accuracy.md); nothing here is typed by hand. A table measured for other
  weights than the model's (a different model id) is never used: no table, no expectation.
* ``expectation_for`` always states the inter-eye distance line when the table has eye-distance rows, and a
  sharpness line only where that sharpness measurably lowered accuracy (≥ 1 point below clean probes), so
  the words stay few. Everything is a statement about LFW probes, and says so: not a promise about a case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

SHARPNESS_DROP = 0.01  # mention sharpness only when its bin lost at least this much accuracy


@dataclass(frozen=True)
class QualityExpectations:
    model_id: str
    clean_accuracy: float
    eye_distance: list[dict[str, Any]]
    sharpness: list[dict[str, Any]]

    @staticmethod
    def _row(rows: list[dict[str, Any]], value: float) -> dict[str, Any] | None:
        if not rows:
            return None
        for row in rows:
            if row["low"] <= value < row.get("high", float("inf")):
                return row
        # a bin left out for too few pairs: the nearest one that was measured
        return min(rows, key=lambda r: min(abs(value - r["low"]), abs(value - r.get("high", r["low"]))))

    def eye_row(self, eye_distance_px: float) -> dict[str, Any] | None:
        return self._row(self.eye_distance, eye_distance_px)

    def sharpness_row(self, sharpness: float) -> dict[str, Any] | None:
        return self._row(self.sharpness, sharpness)


def _span(row: dict[str, Any], unit: str) -> str:
    if "high" not in row:
        return f"≥ {row['low']:g}{unit}"
    if row["low"] <= 0:
        return f"< {row['high']:g}{unit}"
    return f"{row['low']:g}–{row['high']:g}{unit}"


@lru_cache(maxsize=8)
def load_expectations(model_id: str) -> QualityExpectations | None:
    """The shipped table for exactly this model id, or None."""
    name = model_id.split("@")[0]
    try:
        text = (resources.files("facetrail.faces") / "calibration" / f"quality-{name}.json").read_text()
    except (FileNotFoundError, OSError):
        return None
    data = json.loads(text)
    if data.get("model_id") != model_id:
        return None
    return QualityExpectations(
        data["model_id"], float(data["clean_accuracy"]), list(data["eye_distance"]), list(data["sharpness"])
    )


def expectation_for(table: QualityExpectations | None, *, eye_distance_px: float, sharpness: float) -> list[str]:
    """Sentences for the verdict: what LFW probes of this size and sharpness did (see the module docstring)."""
    if table is None:
        return []
    out = []
    clean = f"{table.clean_accuracy * 100:.1f}%"
    eye = table.eye_row(eye_distance_px)
    if eye is not None:
        out.append(
            f"inter-eye distance {eye_distance_px:.0f} px: on LFW probes with {_span(eye, ' px')} between the eyes, "
            f"verification accuracy was {eye['accuracy'] * 100:.1f}% (clean LFW probes: {clean}; {eye['pairs']} pairs)"
        )
    sharp = table.sharpness_row(sharpness)
    if sharp is not None and table.clean_accuracy - sharp["accuracy"] >= SHARPNESS_DROP:
        out.append(
            f"sharpness {sharpness:.0f}: on LFW probes this blurred (sharpness {_span(sharp, '')}), verification "
            f"accuracy was {sharp['accuracy'] * 100:.1f}% (clean LFW probes: {clean}; {sharp['pairs']} pairs)"
        )
    return out
