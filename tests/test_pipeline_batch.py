"""Throughput changes keep the vectors: decoding, cross-image batching and the enrolment path (issue 12).

The reference is the path as it was before: Pillow decode with a numpy RGB→BGR copy, one image at a time,
each face embedded on its own (face and mirror in one pass of 2). Every change must give the same pixels
and vectors with cosine > 0.9999 under the same model id, on real LFW photos.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from face_fixtures import BLANK_WHITE, OBAMA, TWO_PEOPLE
from facetrail.config import get_settings
from facetrail.faces.pipeline import FacePipeline

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACETRAIL_SHARED_DATA", REPO.parent / "shared" / "data"))
LFW_IMAGES = SHARED / "lfw" / "images_deepfunneled"


def _lfw_sample(count: int) -> list[Path]:
    paths = sorted(LFW_IMAGES.rglob("*.jpg"))
    if not paths:
        pytest.skip(f"LFW images not found under {LFW_IMAGES}")
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def _reference_pixels(data: bytes) -> np.ndarray:
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8)[:, :, ::-1])


def test_decode_gives_the_same_pixels(pipeline: FacePipeline) -> None:
    for path in [*_lfw_sample(12), OBAMA, TWO_PEOPLE, BLANK_WHITE]:
        data = path.read_bytes()
        assert np.array_equal(pipeline.decode(data).pixels, _reference_pixels(data)), path


def test_batched_vectors_match_one_face_at_a_time(pipeline: FacePipeline) -> None:
    settings = get_settings()
    batched = FacePipeline(
        settings.model_copy(update={"embedding": settings.embedding.model_copy(update={"batch_faces": 5})})
    )
    paths = _lfw_sample(24)
    images = [batched.decode_path(p) for p in paths]
    results = batched.analyze_many(images)
    compared = 0
    for image, faces in zip(images, results, strict=True):
        assert faces, "every LFW image has a face"
        for analyzed in faces:
            reference = pipeline.embedder.embed(image.pixels, [analyzed.face])[0]  # pixels: test above
            assert analyzed.embedding is not None
            assert analyzed.embedding.model_id == pipeline.model_id
            assert float(analyzed.embedding.vector @ reference) > 0.9999
            compared += 1
    assert compared >= len(paths)
    # and analyze() on one image is analyze_many() on a list of one
    one = batched.analyze(images[0])
    assert [a.embedding.vector.tolist() for a in one if a.embedding] == [
        a.embedding.vector.tolist() for a in results[0] if a.embedding
    ]
