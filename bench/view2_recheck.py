"""LFW View 2 of the default model with a detection setting changed, re-embedding only the images whose
chosen face the setting changes (``bench/refine_scan.py --changed FILE`` lists them); every other image's
face, crop and embedding are provably the same, so they come from the embedding cache.

    FACETRAIL_DETECTION__UPRIGHT_ROLL_DEG=0 PYTHONPATH=src nice -n 10 python bench/view2_recheck.py \
        --data ../shared/data/lfw --changed changed.txt --set upright_roll_deg=8
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facetrail.config import get_settings
from facetrail.evaluation.embedding import DEFAULT_CACHE_DIR, cache_file, choose_eval_face, load_cache
from facetrail.evaluation.lfw import open_lfw, pair_images, read_pairs
from facetrail.evaluation.verification import verify_pairs
from facetrail.faces.detect import detection_id
from facetrail.faces.pipeline import FacePipeline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--changed", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    base = get_settings()
    data = open_lfw(args.data)
    pairs = read_pairs(data.root / "pairs.txt")
    paths = pair_images(pairs)
    pipeline = FacePipeline(base)
    detector_id = detection_id(pipeline.detector.model_id, base.detection)
    cached = load_cache(
        cache_file(
            DEFAULT_CACHE_DIR,
            pipeline.model_id,
            detector_id,
            data.images_dir,
            getattr(pipeline.embedder, "precision", "fp32"),
        )
    )
    assert cached is not None, "no cached clean embeddings: run 'facetrail eval lfw' first"
    missing = set(paths) - set(cached.paths)
    assert not missing, f"{len(missing)} View 2 images are not in the cache"
    emb = cached.subset(paths)
    before, _, _ = verify_pairs(emb, pairs)
    print(f"cached, base settings (environment): {before.accuracy_mean * 100:.2f}% ± {before.accuracy_std * 100:.2f}")
    update = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    settings = base.model_copy(update={"detection": base.detection.model_copy(update=update)})
    changed_pipeline = FacePipeline(settings)
    where = emb.index()
    changed = [line.strip() for line in args.changed.read_text().splitlines() if line.strip()]
    for rel in changed:
        image = changed_pipeline.decode_path(data.image(rel))
        faces = changed_pipeline.detect(image)
        chosen = choose_eval_face(faces, image.width, image.height)
        assert chosen is not None
        emb.vectors[where[rel]] = changed_pipeline.embedder.embed(image.pixels, [faces[chosen]])[0]
    after, _, _ = verify_pairs(emb, pairs)
    print(
        f"with {update} ({len(changed)} images re-embedded): {after.accuracy_mean * 100:.2f}% ± "
        f"{after.accuracy_std * 100:.2f}; AUC {before.auc:.5f} -> {after.auc:.5f}; "
        f"TAR@FAR1e-3 {before.tar_at_far['0.001'] * 100:.2f}% -> {after.tar_at_far['0.001'] * 100:.2f}%"
    )


if __name__ == "__main__":
    main()
