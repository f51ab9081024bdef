"""Per-face quality: measured values and a pass/warn/fail verdict with human-readable reasons."""

from __future__ import annotations

import math

import cv2
import numpy as np

from facetrail.config import QualitySettings
from facetrail.faces.quality_expectations import QualityExpectations, expectation_for
from facetrail.faces.types import DetectedFace, QualityReport, Verdict, eye_roll


def estimate_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 5 landmarks: a coarse geometric estimate, good to ~10°.

    Roll is the eye-line angle. After removing roll, yaw comes from how far the nose tip sits from the
    midline of eyes and mouth, pitch from where it sits between the eye and mouth lines, both against a
    nose protruding ~0.6 inter-eye distances (average adult head).
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    roll = eye_roll(pts)  # right eye (image left) to left eye
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    p = (pts - pts[:2].mean(axis=0)) @ rot.T
    eye_dist = max(float(np.linalg.norm(p[1] - p[0])), 1e-6)
    midline_x = (p[0, 0] + p[1, 0] + p[3, 0] + p[4, 0]) / 4
    depth = 0.6 * eye_dist
    yaw = math.degrees(math.atan2(p[2, 0] - midline_x, depth))
    eye_y, mouth_y = (p[0, 1] + p[1, 1]) / 2, (p[3, 1] + p[4, 1]) / 2
    frontal_nose_y = eye_y + 0.494 * (mouth_y - eye_y)  # the ArcFace template's frontal proportion
    pitch = math.degrees(math.atan2(p[2, 1] - frontal_nose_y, depth))
    return yaw, pitch, roll


def assess_quality(
    face: DetectedFace,
    aligned_bgr: np.ndarray,
    settings: QualitySettings,
    expectations: QualityExpectations | None = None,
) -> QualityReport:
    gray = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    centre = gray[h // 6 : h - h // 12, w // 6 : w - w // 6]  # the face, not the padded border
    sharpness = float(cv2.Laplacian(centre, cv2.CV_64F).var())
    brightness = float(centre.mean())
    clipped = float(((centre <= 8) | (centre >= 247)).mean())
    yaw, pitch, roll = estimate_pose(face.landmarks)
    eye = face.eye_distance

    fails: list[str] = []
    warns: list[str] = []
    if eye < settings.min_eye_distance_fail:
        fails.append(f"face too small: {eye:.0f} px between the eyes (need ≥ {settings.min_eye_distance_fail:.0f})")
    elif eye < settings.min_eye_distance_warn:
        warns.append(f"small face: {eye:.0f} px between the eyes (recommended ≥ {settings.min_eye_distance_warn:.0f})")
    if sharpness < settings.min_sharpness_fail:
        fails.append(f"too blurred: sharpness {sharpness:.0f} (need ≥ {settings.min_sharpness_fail:.0f})")
    elif sharpness < settings.min_sharpness_warn:
        warns.append(f"blurred: sharpness {sharpness:.0f} (recommended ≥ {settings.min_sharpness_warn:.0f})")
    if brightness < settings.min_brightness:
        warns.append(f"underexposed: mean brightness {brightness:.0f}")
    elif brightness > settings.max_brightness:
        warns.append(f"overexposed: mean brightness {brightness:.0f}")
    if clipped > settings.max_clipped_fraction:
        warns.append(f"{clipped:.0%} of the face is clipped to black or white")
    if abs(yaw) > settings.max_yaw_fail:
        fails.append(f"head turned too far: yaw ≈ {yaw:.0f}° (limit {settings.max_yaw_fail:.0f}°)")
    elif abs(yaw) > settings.max_yaw_warn:
        warns.append(f"head turned: yaw ≈ {yaw:.0f}°")
    if abs(pitch) > settings.max_pitch_warn:
        warns.append(f"head tilted up/down: pitch ≈ {pitch:.0f}°")
    if abs(roll) > settings.max_roll_warn:
        warns.append(f"head tilted sideways: roll ≈ {roll:.0f}°")
    if face.score < settings.min_detection_score_warn:
        warns.append(f"low detector confidence {face.score:.2f}")
    verdict: Verdict = "fail" if fails else "warn" if warns else "pass"
    return QualityReport(
        verdict=verdict,
        reasons=fails + warns,
        eye_distance_px=eye,
        sharpness=sharpness,
        brightness=brightness,
        clipped_fraction=clipped,
        yaw_deg=yaw,
        pitch_deg=pitch,
        roll_deg=roll,
        detection_score=face.score,
        expectations=expectation_for(expectations, eye_distance_px=eye, sharpness=sharpness),
    )
