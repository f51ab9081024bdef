"""How well do the chosen face's landmarks follow a head turned in the picture plane?

Takes the first ``--images`` View 2 images, turns each by ±``--degrees`` about its eye midpoint with the
degraded-probe protocol's ``rotate=+-D`` step (seeded, the sign drawn per image), and compares the landmarks
the detector finds on the turned image with the clean image's landmarks turned by the same angle. Prints,
for each detection setting, the median and 90th percentile of the eye-line (roll) error and the median mean
landmark error as a fraction of the eye distance.

    PYTHONPATH=src nice -n 10 python bench/roll_error.py --data ../shared/data/lfw \\
        --config upright_roll_deg=0 --config upright_estimator=yunet,upright_gain=2 --config default
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facetrail.config import get_settings
from facetrail.evaluation.degrade import degrade, degraded_landmarks, image_seed, parse_spec
from facetrail.evaluation.embedding import choose_eval_face
from facetrail.evaluation.lfw import open_lfw, pair_images, read_pairs
from facetrail.faces.detect import detect_faces
from facetrail.faces.pipeline import FacePipeline
from facetrail.faces.types import eye_roll


def _parse_config(text: str) -> dict[str, object]:
    if text == "default":
        return {}
    update: dict[str, object] = {}
    for item in text.split(","):
        key, value = item.split("=", 1)
        try:
            update[key] = float(value)
        except ValueError:
            update[key] = value
    return update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--degrees", type=float, default=30.0)
    parser.add_argument("--config", action="append", default=[], help="detection settings, k=v,k=v or 'default'")
    args = parser.parse_args()
    base = get_settings()
    pipeline = FacePipeline(base)
    data = open_lfw(args.data)
    spec = parse_spec(f"rotate=+-{args.degrees:g}")
    samples = []
    for rel in pair_images(read_pairs(data.root / "pairs.txt"))[: args.images]:
        pixels = pipeline.decode_path(data.image(rel)).pixels
        faces = detect_faces(pixels, pipeline.detector, base.detection)
        chosen = choose_eval_face(faces, pixels.shape[1], pixels.shape[0])
        if chosen is None:
            continue
        seed = image_seed(spec, rel)
        turned = degrade(pixels, spec, landmarks=faces[chosen].landmarks, seed=seed)
        truth = degraded_landmarks(spec, faces[chosen].landmarks, pixels.shape[1], pixels.shape[0], seed=seed)
        samples.append((turned, truth))
    for text in args.config or ["default"]:
        settings = base.detection.model_copy(update=_parse_config(text))
        roll_errors, landmark_errors = [], []
        for turned, truth in samples:
            faces = detect_faces(turned, pipeline.detector, settings)
            chosen = choose_eval_face(faces, turned.shape[1], turned.shape[0])
            if chosen is None:
                roll_errors.append(180.0)
                landmark_errors.append(float("inf"))
                continue
            found = faces[chosen].landmarks
            roll_errors.append(abs((eye_roll(found) - eye_roll(truth) + 180) % 360 - 180))
            eye = float(np.linalg.norm(truth[1] - truth[0]))
            landmark_errors.append(float(np.linalg.norm(found - truth, axis=1).mean()) / eye)
        print(
            f"{text}: {len(samples)} probes turned ±{args.degrees:g}°; roll error median "
            f"{np.median(roll_errors):.1f}°, 90th percentile {np.percentile(roll_errors, 90):.1f}°; "
            f"landmark error median {np.median(landmark_errors):.3f} of the eye distance",
            flush=True,
        )


if __name__ == "__main__":
    main()
