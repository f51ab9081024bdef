"""The SFace embedder runs on OpenCV DNN by default and on ONNX Runtime on request: same weights, same vectors,
same model id (so the shipped calibration table applies to both)."""

from __future__ import annotations

import numpy as np
import pytest

from face_fixtures import FIXTURES
from facetrail.config import EmbeddingSettings, Settings
from facetrail.errors import ModelError
from facetrail.faces.embed import sface_embedder
from facetrail.faces.pipeline import FacePipeline


def test_opencv_and_onnxruntime_backends_give_the_same_embeddings() -> None:
    pipelines = {b: FacePipeline(Settings(embedding=EmbeddingSettings(backend=b))) for b in ("opencv", "onnxruntime")}
    assert pipelines["opencv"].model_id == pipelines["onnxruntime"].model_id
    assert pipelines["opencv"].embedder.backend == "opencv"  # type: ignore[attr-defined]
    for name in ("two_people.jpg", "obama.jpg", "biden.jpg"):
        image = pipelines["opencv"].decode_path(FIXTURES / "face_recognition" / name)
        faces = pipelines["opencv"].detect(image)
        a = pipelines["opencv"].embedder.embed(image.pixels, faces)
        b = pipelines["onnxruntime"].embedder.embed(image.pixels, faces)
        assert a.shape == b.shape == (len(faces), 128)
        assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
        assert float(np.min(np.sum(a * b, axis=1))) > 0.99999


def test_unknown_backend_is_a_clear_model_error() -> None:
    with pytest.raises(ModelError, match="unknown embedding backend 'tensorflow'"):
        sface_embedder(backend="tensorflow")
