"""Drawing detections on a copy of an image (for --annotate and reports)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from facetrail.faces.pipeline import AnalyzedFace

VERDICT_COLOURS = {"pass": (60, 180, 60), "warn": (0, 180, 255), "fail": (40, 40, 220)}  # BGR


def draw_faces(image_bgr: np.ndarray, faces: Sequence[AnalyzedFace], out: str | Path) -> Path:
    """Boxes coloured by quality verdict, landmarks, and "#index verdict score"; returns the path written."""
    canvas = image_bgr.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 500))
    for f in faces:
        x, y, w, h = (round(v) for v in f.face.box)
        colour = VERDICT_COLOURS[f.quality.verdict]
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, thickness)
        for px, py in f.face.landmarks:
            cv2.circle(canvas, (round(float(px)), round(float(py))), thickness + 1, (255, 255, 0), -1)
        label = f"#{f.index} {f.quality.verdict} {f.face.score:.2f}"
        cv2.putText(canvas, label, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, colour, thickness)
    path = Path(out)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):  # PNG unless a JPEG name was asked for
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"could not write {path}")
    return path  # the file actually written
