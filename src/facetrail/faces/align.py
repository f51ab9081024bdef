"""Alignment: a similarity transform (rotation, uniform scale, translation) of the 5 landmarks onto a template.

Estimated in closed form (Umeyama, 1991) so that it is deterministic and never fails on degenerate RANSAC draws.
"""

from __future__ import annotations

import cv2
import numpy as np

# The ArcFace / SFace 112×112 template (the one OpenCV's FaceRecognizerSF.alignCrop uses).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2×3 matrix M minimising sum |M·src_i − dst_i|² over similarity transforms (Umeyama)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[0]
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / n
    scale = float((s * d).sum() / var_src) if var_src > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = dst_mean - scale * rot @ src_mean
    return m


def align_face(
    image_bgr: np.ndarray,
    landmarks: np.ndarray,
    size: int = 112,
    template: np.ndarray = ARCFACE_TEMPLATE_112,
) -> np.ndarray:
    """Warp the face to ``size``×``size`` with the template scaled to that size."""
    dst = template * (size / 112.0)
    m = similarity_transform(landmarks, dst)
    return cv2.warpAffine(image_bgr, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
