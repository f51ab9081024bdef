"""Does a detection setting change the clean LFW View 2 path? Detect every View 2 image with the shipped
settings and with the candidate ones and compare the face the evaluation chooses (landmarks and box).

    FACETRAIL_DETECTION__UPRIGHT_ROLL_DEG=0 PYTHONPATH=src nice -n 10 python bench/refine_scan.py \
        --data ../shared/data/lfw --set upright_roll_deg=8 --set small_face_upscale_eye_px=24

Prints how many images' chosen face changed, and the largest |roll| and smallest eye distance seen, so a
trigger that never fires on clean View 2 images is shown not to move the published View 2 figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facetrail.config import get_settings
from facetrail.evaluation.embedding import choose_eval_face
from facetrail.evaluation.lfw import open_lfw, pair_images, read_pairs
from facetrail.faces.detect import detect_faces
from facetrail.faces.pipeline import FacePipeline
from facetrail.faces.types import eye_roll


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], help="detection setting=value")
    parser.add_argument("--changed", type=Path, help="write the changed images here, one a line")
    args = parser.parse_args()
    base = get_settings()
    update = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    candidate = base.detection.model_copy(update=update)
    pipeline = FacePipeline(base)
    data = open_lfw(args.data)
    paths = pair_images(read_pairs(data.root / "pairs.txt"))
    changed, rolls, eyes = [], [], []
    for i, rel in enumerate(paths):
        image = pipeline.decode_path(data.image(rel)).pixels
        before = detect_faces(image, pipeline.detector, base.detection)
        after = detect_faces(image, pipeline.detector, candidate)
        a = choose_eval_face(before, image.shape[1], image.shape[0])
        b = choose_eval_face(after, image.shape[1], image.shape[0])
        if a is None or b is None:
            if a != b:
                changed.append(rel)
            continue
        fa, fb = before[a], after[b]
        if not (np.array_equal(fa.landmarks, fb.landmarks) and fa.box == fb.box):
            changed.append(rel)
            print(f"changed {rel}: roll {eye_roll(fa.landmarks):.1f}, eye {fa.eye_distance:.1f}")
        rolls.append(abs(eye_roll(fa.landmarks)))
        eyes.append(fa.eye_distance)
        if (i + 1) % 1000 == 0:
            print(f"{i + 1}/{len(paths)} images, {len(changed)} changed", flush=True)
    print(f"View 2 images: {len(paths)}; chosen face changed by {update}: {len(changed)}")
    print(f"largest |roll| of a chosen face: {max(rolls):.1f}°; 99th percentile {np.percentile(rolls, 99):.1f}°")
    print(f"smallest eye distance of a chosen face: {min(eyes):.1f} px")
    for rel in changed[:20]:
        print("changed:", rel)
    if args.changed:
        args.changed.write_text("".join(f"{rel}\n" for rel in changed))


if __name__ == "__main__":
    main()
