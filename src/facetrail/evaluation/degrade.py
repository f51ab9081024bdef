"""Deterministic probe degradations for the degraded-probe protocol (``facetrail eval ... --degrade SPEC``).

Guarantees:
* ``parse_spec`` accepts exactly the grammar below and rejects anything else with a ``BadInputError`` that
  names the offending step and the accepted range; the parsed spec has one canonical text form
  (``DegradeSpec.text``), so ``eye=16+jpeg=20`` and ``jpeg=20+eye=16`` are the same protocol and share caches.
* ``degrade`` is a pure function of (pixels, spec, face geometry, seed): the same inputs give the same bytes.
  Randomness (noise, motion-blur direction, the sign of ``rotate=+-A``) comes only from a NumPy generator
  seeded with ``image_seed(spec, name, seed)``, a hash of the spec's canonical text, the image's name and
  the base seed.
* Only the probe is degraded; galleries and the second image of a pair stay clean (the caller's job).

Grammar (docs/accuracy.md has the measured levels)::

    SPEC  := "clean" | STEP ("+" STEP)*
    STEP  := "eye=" PX          scale the whole image so the inter-eye distance becomes PX (4..200)
           | "jpeg=" Q          re-encode as JPEG at quality Q (1..100)
           | "blur=" SIGMA      Gaussian blur, sigma in pixels of the (scaled) image (0.1..20)
           | "motion=" LEN ["@" DEG]   linear motion blur of LEN pixels (2..60), direction DEG (0..180;
                                default: uniform per image)
           | "gamma=" G         low light: v' = 255·(v/255)^G (1..5; 2.5 is a dim room)
           | "noise=" SIGMA     additive Gaussian sensor noise, sigma in grey levels (0..100)
           | "occlude=" ("lower" | "eyes")   a surgical-mask shape over the lower face, or a sunglasses band
           | "rotate=" ["+-"] DEG   in-plane rotation about the eye midpoint (-90..90); "+-" picks the sign
                                per image

Steps are applied in a fixed physical order whatever order they are written in: rotate, eye (the camera's
geometry and distance), occlude, blur, motion, gamma, noise, jpeg (the encoder last). Each step may appear
once. Face-relative steps (eye, occlude, rotate) need the face's five landmarks in the clean image; the
evaluation takes them from the detector on the clean image.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import cv2
import numpy as np

from facetrail.errors import BadInputError

ORDER = ("rotate", "eye", "occlude", "blur", "motion", "gamma", "noise", "jpeg")
RANGES: dict[str, tuple[float, float]] = {
    "eye": (4, 200),
    "jpeg": (1, 100),
    "blur": (0.1, 20),
    "motion": (2, 60),
    "gamma": (1, 5),
    "noise": (0, 100),
    "rotate": (-90, 90),
}
OCCLUSIONS = ("lower", "eyes")
INTEGER_STEPS = {"jpeg", "motion"}
FACE_STEPS = {"eye", "occlude", "rotate"}


@dataclass(frozen=True)
class Step:
    name: str
    value: float | str
    angle: float | None = None  # motion: fixed direction in degrees
    either_sign: bool = False  # rotate=+-A

    @property
    def text(self) -> str:
        if self.name == "occlude":
            return f"occlude={self.value}"
        value = float(self.value)
        number = f"{int(value)}" if value == int(value) else f"{value:g}"
        if self.either_sign:
            number = "+-" + number
        if self.angle is not None:
            angle = f"{int(self.angle)}" if self.angle == int(self.angle) else f"{self.angle:g}"
            number += "@" + angle
        return f"{self.name}={number}"


@dataclass(frozen=True)
class DegradeSpec:
    steps: tuple[Step, ...]  # in ORDER

    @property
    def text(self) -> str:
        return "+".join(s.text for s in self.steps) or "clean"

    @property
    def needs_face(self) -> bool:
        return any(s.name in FACE_STEPS for s in self.steps)

    @property
    def is_clean(self) -> bool:
        return not self.steps

    def get(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


def _number(step: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise BadInputError(f"degrade step {step!r}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise BadInputError(f"degrade step {step!r}: {raw!r} is not a finite number")
    return value


def parse_spec(text: str) -> DegradeSpec:
    """The spec for ``text`` (see the module docstring), or BadInputError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise BadInputError("empty degrade spec: give 'clean' or steps such as 'eye=16+jpeg=20'")
    text = text.strip()
    if text.lower() == "clean":
        return DegradeSpec(())
    steps: dict[str, Step] = {}
    parts = _split_steps(text)
    for raw in parts:
        name, sep, value = raw.partition("=")
        name = name.strip().lower()
        value = value.strip()
        if not sep or not value:
            raise BadInputError(f"degrade step {raw!r}: write NAME=VALUE (steps: {', '.join(ORDER)})")
        if name not in ORDER:
            raise BadInputError(f"degrade step {raw!r}: unknown step {name!r} (steps: {', '.join(ORDER)})")
        if name in steps:
            raise BadInputError(f"degrade spec {text!r}: step {name!r} appears twice")
        if name == "occlude":
            if value.lower() not in OCCLUSIONS:
                raise BadInputError(f"degrade step {raw!r}: occlude is one of {', '.join(OCCLUSIONS)}")
            steps[name] = Step(name, value.lower())
            continue
        angle = None
        either = False
        if name == "motion" and "@" in value:
            value, _, angle_text = value.partition("@")
            angle = _number(name, angle_text)
            if not 0 <= angle <= 180:
                raise BadInputError(f"degrade step {raw!r}: motion direction must be in 0..180 degrees")
        if name == "rotate" and value.startswith("+-"):
            either, value = True, value[2:]
        number = _number(name, value)
        low, high = RANGES[name]
        if not low <= number <= high:
            raise BadInputError(f"degrade step {raw!r}: {name} must be in {low:g}..{high:g}")
        if name in INTEGER_STEPS and number != int(number):
            raise BadInputError(f"degrade step {raw!r}: {name} takes a whole number")
        if either and number < 0:
            raise BadInputError(f"degrade step {raw!r}: write rotate=+-A with A ≥ 0")
        steps[name] = Step(name, number, angle, either)
    return DegradeSpec(tuple(steps[n] for n in ORDER if n in steps))


def _split_steps(text: str) -> list[str]:
    """Split on '+' except the '+' of a '+-' sign right after '='."""
    parts: list[str] = []
    current = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "+" and not (current.endswith("=") and text[i + 1 : i + 2] == "-"):
            if not current.strip():
                raise BadInputError(f"degrade spec {text!r}: an empty step (two '+' in a row, or one at an end)")
            parts.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    if not current.strip():
        raise BadInputError(f"degrade spec {text!r}: an empty step (two '+' in a row, or one at an end)")
    parts.append(current.strip())
    return parts


def image_seed(spec: DegradeSpec, name: str, seed: int = 0) -> int:
    """The per-image seed: a hash of the canonical spec, the image name and the base seed."""
    digest = hashlib.sha256(f"{spec.text}|{name}|{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _eye_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(eye midpoint, unit vector along the eye line, unit vector towards the mouth, eye distance)."""
    pts = np.asarray(landmarks, np.float64)
    centre = (pts[0] + pts[1]) / 2
    along = pts[1] - pts[0]
    distance = float(np.linalg.norm(along))
    u = along / max(distance, 1e-6)
    v = np.array([-u[1], u[0]])
    if np.dot((pts[3] + pts[4]) / 2 - centre, v) < 0:
        v = -v
    return centre, u, v, distance


def _transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def _occlude(pixels: np.ndarray, landmarks: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    centre, u, v, d = _eye_frame(landmarks)
    pts = np.asarray(landmarks, np.float64)
    if kind == "lower":
        nose_v = float(np.dot(pts[2] - centre, v))
        mouth_v = float(np.dot((pts[3] + pts[4]) / 2 - centre, v))
        top, bottom, half = nose_v - 0.3 * d, mouth_v + 1.0 * d, 1.2 * d
        colour = (205, 190, 160)  # BGR: a pale blue surgical mask
    else:
        top, bottom, half = -0.42 * d, 0.34 * d, 1.05 * d
        colour = (22, 22, 22)  # dark lenses and frame
    corners = [centre + a * u + b * v for a, b in ((-half, top), (half, top), (half, bottom), (-half, bottom))]
    out = pixels.copy()
    cv2.fillPoly(out, [np.round(np.array(corners)).astype(np.int32)], colour, lineType=cv2.LINE_AA)
    return out


def _motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    size = length if length % 2 else length + 1
    kernel = np.zeros((size, size), np.float32)
    c = (size - 1) / 2
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    half = (length - 1) / 2
    p1 = (round(c - dx * half), round(c - dy * half))
    p2 = (round(c + dx * half), round(c + dy * half))
    cv2.line(kernel, p1, p2, 1.0, 1, lineType=cv2.LINE_AA)
    return kernel / kernel.sum()


def degrade(
    pixels: np.ndarray,
    spec: DegradeSpec,
    *,
    landmarks: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The degraded copy of ``pixels`` (BGR uint8). ``landmarks`` (5×2, clean image) for eye/occlude/rotate."""
    if spec.needs_face and landmarks is None:
        raise BadInputError(f"degrade spec {spec.text!r} needs the face's landmarks (eye, occlude, rotate)")
    rng = np.random.default_rng(seed)
    out = np.ascontiguousarray(pixels)
    pts = None if landmarks is None else np.asarray(landmarks, np.float64)
    for step in spec.steps:
        if step.name == "rotate":
            assert pts is not None
            angle = float(step.value)
            if step.either_sign and rng.random() < 0.5:
                angle = -angle
            centre = (pts[0] + pts[1]) / 2
            m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
            h, w = out.shape[:2]
            out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            pts = _transform_points(m, pts)
        elif step.name == "eye":
            assert pts is not None
            current = float(np.linalg.norm(pts[1] - pts[0]))
            if current <= 0:
                raise BadInputError("eye scaling needs two distinct eye landmarks")
            scale = float(step.value) / current
            h, w = out.shape[:2]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            sx, sy = size[0] / w, size[1] / h
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            out = cv2.resize(out, size, interpolation=interpolation)
            # pixel centres: x' = (x + 0.5)·s − 0.5
            pts = (pts + 0.5) * np.array([sx, sy]) - 0.5
        elif step.name == "occlude":
            assert pts is not None
            out = _occlude(out, pts, str(step.value), rng)
        elif step.name == "blur":
            out = cv2.GaussianBlur(out, (0, 0), float(step.value), borderType=cv2.BORDER_REFLECT_101)
        elif step.name == "motion":
            angle = step.angle if step.angle is not None else float(rng.uniform(0.0, 180.0))
            kernel = _motion_kernel(int(step.value), angle)
            out = cv2.filter2D(out, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
        elif step.name == "gamma":
            table = (255.0 * (np.arange(256) / 255.0) ** float(step.value)).round().astype(np.uint8)
            out = cv2.LUT(out, table)
        elif step.name == "noise":
            noise = rng.normal(0.0, float(step.value), out.shape)
            out = np.clip(out.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)
        elif step.name == "jpeg":
            ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(step.value)])
            if not ok:  # pragma: no cover - OpenCV always encodes a BGR uint8 image
                raise BadInputError("JPEG encoding failed")
            decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
            if decoded is None:  # pragma: no cover
                raise BadInputError("JPEG decoding failed")
            out = decoded
    return np.ascontiguousarray(out)


def degraded_landmarks(spec: DegradeSpec, landmarks: np.ndarray, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Where the clean landmarks land after the geometric steps (rotate, eye): for tests and diagnostics."""
    rng = np.random.default_rng(seed)
    pts = np.asarray(landmarks, np.float64)
    w, h = width, height
    for step in spec.steps:
        if step.name == "rotate":
            angle = float(step.value)
            if step.either_sign and rng.random() < 0.5:
                angle = -angle
            centre = (pts[0] + pts[1]) / 2
            pts = _transform_points(cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0), pts)
        elif step.name == "eye":
            scale = float(step.value) / float(np.linalg.norm(pts[1] - pts[0]))
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            pts = (pts + 0.5) * np.array([size[0] / w, size[1] / h]) - 0.5
            w, h = size
    return pts
