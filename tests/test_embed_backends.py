"""The SFace embedder runs on OpenVINO by default (bf16 where the CPU computes it natively), and on OpenCV DNN or
ONNX Runtime on request. Same weights, same model id (so the shipped calibration table applies to all); the fp32
runtimes give the same vectors, bf16 close ones."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from face_fixtures import FIXTURES
from facetrail.config import EmbeddingSettings, Settings
from facetrail.errors import ModelError
from facetrail.faces.embed import cpu_has_native_bf16, sface_embedder
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


def _vectors(pipeline: FacePipeline, reference: FacePipeline) -> tuple[np.ndarray, np.ndarray]:
    """Both pipelines' vectors for the same detected faces of the fixture photos (reference's detections)."""
    mine, theirs = [], []
    for name in ("two_people.jpg", "obama.jpg", "biden.jpg", "obama2.jpg"):
        image = reference.decode_path(FIXTURES / "face_recognition" / name)
        faces = reference.detect(image)
        mine.append(pipeline.embedder.embed(image.pixels, faces))
        theirs.append(reference.embedder.embed(image.pixels, faces))
    return np.concatenate(mine), np.concatenate(theirs)


def test_openvino_fp32_gives_the_same_vectors_as_opencv() -> None:
    opencv = FacePipeline(Settings(embedding=EmbeddingSettings(backend="opencv")))
    openvino = FacePipeline(Settings(embedding=EmbeddingSettings(backend="openvino", precision="fp32")))
    assert openvino.embedder.precision == "fp32"  # type: ignore[attr-defined]
    assert openvino.model_id == opencv.model_id
    a, b = _vectors(openvino, opencv)
    assert len(a) >= 5
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.99999


def test_default_runtime_is_openvino_with_bf16_where_the_cpu_has_it() -> None:
    default = FacePipeline(Settings())
    assert default.embedder.backend == "openvino"  # type: ignore[attr-defined]
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert default.embedder.precision == expected  # type: ignore[attr-defined]
    opencv = FacePipeline(Settings(embedding=EmbeddingSettings(backend="opencv")))
    assert default.model_id == opencv.model_id
    a, b = _vectors(default, opencv)
    cosines = np.sum(a * b, axis=1)
    # bf16 keeps 8 significant bits per activation: close to fp32, not equal (LFW: mean 0.99992, worst 0.9989)
    assert float(cosines.min()) > 0.998
    assert float(cosines.mean()) > 0.9997
    if expected == "bf16":
        assert float(cosines.min()) < 0.99999  # it really ran in bf16, not silently in fp32


def test_openvino_telemetry_is_shut_out(tmp_path: Path) -> None:
    """Air-gapped and privacy-bound installs: ``import openvino`` would start its opt-out telemetry, which writes a
    client id under ~/intel. Embedding a photo in a fresh process opens no network connection and leaves no
    OpenVINO file in the user's home."""
    script = textwrap.dedent(
        f"""
        import socket
        def refuse(*args, **kwargs):
            raise SystemExit("network connection attempted: " + repr(args))
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        from facetrail.config import Settings
        from facetrail.faces.pipeline import FacePipeline
        pipeline = FacePipeline(Settings())
        image = pipeline.decode_path({str(FIXTURES / "face_recognition" / "obama.jpg")!r})
        faces = pipeline.analyze(image)
        assert faces and faces[0].embedding is not None and pipeline.embedder.backend == "openvino"
        print("embedded")
        """
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "embedded" in result.stdout
    written = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    assert not [name for name in written if name.startswith("intel")]  # OpenVINO's telemetry client id
    # ONNX Runtime (detectors) writes a device id of its own; known, left as it is (docs/deployment.md)
    assert not [name for name in written if not name.startswith(".cache/Microsoft/DeveloperTools/")]


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU computes bfloat16 natively")
def test_bf16_differs_from_fp32_on_this_cpu() -> None:
    bf16 = FacePipeline(Settings(embedding=EmbeddingSettings(backend="openvino", precision="bf16")))
    fp32 = FacePipeline(Settings(embedding=EmbeddingSettings(backend="openvino", precision="fp32")))
    a, b = _vectors(bf16, fp32)
    assert 0.998 < float(np.min(np.sum(a * b, axis=1))) < 0.99999


@pytest.mark.skipif(cpu_has_native_bf16(), reason="this CPU has native bfloat16")
def test_forcing_bf16_on_a_cpu_without_it_is_refused() -> None:
    with pytest.raises(ModelError, match="native bfloat16"):
        sface_embedder(backend="openvino", precision="bf16")


def test_unknown_backend_or_precision_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="unknown embedding backend 'tensorflow'"):
        sface_embedder(backend="tensorflow")
    with pytest.raises(ModelError, match="unknown embedding precision 'fp8'"):
        sface_embedder(backend="openvino", precision="fp8")
    with pytest.raises(ValueError, match="precision"):
        EmbeddingSettings(precision="fp8")  # type: ignore[arg-type]
