"""Compute devices for the face models: which ONNX Runtime execution providers a setting asks for.

Guarantees: ``cpu`` (the default) needs nothing beyond the base install and is what every test runs. ``cuda``
is honoured or refused, never silently downgraded: if ONNX Runtime has no CUDA execution provider (the
CPU-only ``onnxruntime`` wheel), or a session that asked for it came up on the CPU anyway (CUDA or cuDNN
libraries missing), the analysis fails with ``DeviceUnavailableError`` (``device_unavailable``) naming what
is missing. Weights and model ids do not depend on the device: vectors agree with the CPU path within the
tolerance tests/test_device.py states. Who may choose the device: whoever sets the configuration or runs the
CLI (``--device``); it is not a request parameter.
"""

from __future__ import annotations

from typing import Any

from facetrail.errors import DeviceUnavailableError

DEVICES = ("cpu", "cuda")
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise DeviceUnavailableError(f"unknown device {device!r} (choose {' or '.join(DEVICES)})")
    return device


def available_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:  # pragma: no cover - a base dependency
        return []
    return list(ort.get_available_providers())


def onnx_providers(device: str, device_id: int = 0) -> list[Any]:
    """The provider list for an ONNX Runtime session on ``device`` (CPU kept last as ORT's own fallback for
    operators the CUDA provider lacks; ``require_provider`` then checks the session really uses CUDA)."""
    if check_device(device) == "cpu":
        return [CPU_PROVIDER]
    have = available_providers()
    if CUDA_PROVIDER not in have:
        raise DeviceUnavailableError(cuda_missing_message(have))
    return [(CUDA_PROVIDER, {"device_id": int(device_id)}), CPU_PROVIDER]


def require_provider(session: Any, device: str) -> None:
    """Refuse a session that asked for CUDA but runs on the CPU (ORT falls back quietly when libraries fail)."""
    if device == "cuda" and CUDA_PROVIDER not in session.get_providers():
        raise DeviceUnavailableError(
            "CUDA was requested but ONNX Runtime could not start its CUDA execution provider (CUDA 12 and "
            "cuDNN 9 libraries must be loadable, and an NVIDIA GPU visible); use --device cpu or fix the install"
        )


def cuda_missing_message(have: list[str]) -> str:
    try:
        import onnxruntime as ort

        version = f"onnxruntime {ort.__version__}"
    except ModuleNotFoundError:  # pragma: no cover
        version = "no onnxruntime"
    return (
        f"CUDA was requested (--device cuda / compute.device) but {version} offers only "
        f"{', '.join(have) or 'no execution providers'}: install onnxruntime-gpu in place of onnxruntime "
        "(pip uninstall onnxruntime && pip install onnxruntime-gpu) on a machine with an NVIDIA GPU, "
        "or use --device cpu"
    )
