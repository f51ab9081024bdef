"""Compute devices (issue 12): CPU stays the default and passes everything; CUDA is honoured or refused clearly.

On this CPU-only install ``--device cuda`` must fail with ``device_unavailable`` (exit 5) before any work,
naming onnxruntime-gpu. The ONNX Runtime YuNet that the CUDA path uses is checked here on ONNX Runtime's CPU
provider against OpenCV's FaceDetectorYN (the CPU default), and the ONNX Runtime embedder against OpenCV's:
same faces, same vectors, same model ids. Where a GPU is present, the last test compares CUDA with CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from face_fixtures import OBAMA, TWO_PEOPLE
from facetrail.cli.main import app
from facetrail.config import ComputeSettings, EmbeddingSettings, Settings
from facetrail.errors import DeviceUnavailableError
from facetrail.faces.detect import YuNetDetector, YuNetOnnxDetector, detect_faces
from facetrail.faces.device import CUDA_PROVIDER, available_providers, onnx_providers
from facetrail.faces.pipeline import FacePipeline

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACETRAIL_SHARED_DATA", REPO.parent / "shared" / "data"))
LFW_IMAGES = SHARED / "lfw" / "images_deepfunneled"
HAS_CUDA = CUDA_PROVIDER in available_providers()
runner = CliRunner()


def _photos(count: int) -> list[Path]:
    lfw = sorted(LFW_IMAGES.rglob("*.jpg"))
    step = max(1, len(lfw) // count) if lfw else 1
    return [OBAMA, TWO_PEOPLE, *lfw[::step][:count]]


def test_cpu_is_the_default() -> None:
    assert Settings().compute.device == "cpu"
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_unknown_device_is_refused() -> None:
    with pytest.raises(DeviceUnavailableError, match="unknown device"):
        onnx_providers("tpu")


def test_onnx_yunet_finds_the_same_faces_as_opencv(pipeline: FacePipeline) -> None:
    opencv, onnx = YuNetDetector(), YuNetOnnxDetector(device="cpu")
    assert opencv.model_id == onnx.model_id
    checked = 0
    for path in _photos(16):
        image = pipeline.decode_path(path)
        a = detect_faces(image.pixels, opencv, pipeline.settings.detection)
        b = detect_faces(image.pixels, onnx, pipeline.settings.detection)
        assert len(a) == len(b), path
        for fa, fb in zip(a, b, strict=True):
            assert np.abs(np.array(fa.box) - np.array(fb.box)).max() < 0.05
            assert np.abs(fa.landmarks - fb.landmarks).max() < 0.05
            assert abs(fa.score - fb.score) < 1e-3
            checked += 1
    assert checked >= 3


def test_onnxruntime_pipeline_gives_the_same_vectors() -> None:
    """The CUDA path's runtime (ONNX Runtime for both models, fp32), here on its CPU provider, against the CPU
    path in fp32 (the default's bf16 is close, not equal: tests/test_embed_backends.py)."""
    settings = Settings(embedding=EmbeddingSettings(precision="fp32"))
    pipeline = FacePipeline(settings)
    ort_settings = settings.model_copy(
        update={"embedding": settings.embedding.model_copy(update={"backend": "onnxruntime"})}
    )
    ort_pipeline = FacePipeline(ort_settings)
    ort_pipeline._local.detector = YuNetOnnxDetector(device="cpu")  # what make_detector gives for cuda
    assert ort_pipeline.model_id == pipeline.model_id
    for path in _photos(6):
        image = pipeline.decode_path(path)
        for a, b in zip(pipeline.analyze(image), ort_pipeline.analyze(image), strict=True):
            assert a.embedding is not None and b.embedding is not None
            assert float(a.embedding.vector @ b.embedding.vector) > 0.9999


@pytest.mark.skipif(HAS_CUDA, reason="this ONNX Runtime has a CUDA provider")
def test_cuda_without_onnxruntime_gpu_fails_clearly() -> None:
    with pytest.raises(DeviceUnavailableError, match="onnxruntime-gpu") as info:
        onnx_providers("cuda")
    assert info.value.code == "device_unavailable" and info.value.exit_code == 5
    settings = Settings(compute=ComputeSettings(device="cuda"))
    cuda_pipeline = FacePipeline(settings)
    image = cuda_pipeline.decode_path(OBAMA)
    with pytest.raises(DeviceUnavailableError):
        cuda_pipeline.analyze(image)


@pytest.mark.skipif(HAS_CUDA, reason="this ONNX Runtime has a CUDA provider")
@pytest.mark.parametrize(
    "args",
    [
        ["enroll", "--device", "cuda", "--gallery", "g", str(OBAMA), "--json"],
        ["eval", "lfw", "--device", "cuda", "--data", "/nonexistent", "--json"],
        ["index", "rebuild", "--device", "cuda", "--json"],
    ],
    ids=["enroll", "eval", "index-rebuild"],
)
def test_cli_device_cuda_is_refused_before_any_work(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACETRAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FACETRAIL_COMPUTE__DEVICE", "cpu")
    result = runner.invoke(app, args)
    assert result.exit_code == 5, (result.stdout, result.stderr)
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "device_unavailable"
    assert "cuda" in error["message"].lower()
    assert not (tmp_path / "data").exists() or args[0] == "index"  # nothing enrolled or embedded


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_cuda_vectors_match_cpu(pipeline: FacePipeline) -> None:  # pragma: no cover - GPU machines only
    cuda = FacePipeline(Settings(compute=ComputeSettings(device="cuda")))
    assert cuda.model_id == pipeline.model_id
    for path in _photos(24):
        image = pipeline.decode_path(path)
        for a, b in zip(pipeline.analyze(image), cuda.analyze(image), strict=True):
            assert a.embedding is not None and b.embedding is not None
            assert float(a.embedding.vector @ b.embedding.vector) > 0.9999
