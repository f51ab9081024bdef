"""Probe photos between the two steps of a web search, and the searched face for the results page.

Both are held in the database (``facetrail.cluster.held_probes``: short time-to-live, deleted on use or expiry),
so the two steps and the results page may be answered by different processes or hosts. A pending probe
belongs to the user who uploaded it. Its face analysis is derived again from the held bytes when the second
step lands on a process that has not seen it (a small per-process cache spares the same process the work;
nothing depends on it).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from facetrail.cases.probe import ProbeAnalysis, analyze_upload, encode_jpeg
from facetrail.cluster import held_probes
from facetrail.context import AppContext
from facetrail.gallery.search import probe_store
from facetrail.gallery.service import pipeline_for

PENDING_SECONDS = held_probes.PENDING_SECONDS
FACES_SECONDS = held_probes.FACES_SECONDS
PREVIEW_MAX_SIDE = 960
_ANALYSES_MAX = 8


@dataclass
class PendingProbe:
    user_id: int | None
    data: bytes
    analysis: ProbeAnalysis
    fields: dict[str, str]


_analyses: OrderedDict[str, ProbeAnalysis] = OrderedDict()  # sha256 of the bytes -> analysis (a cache only)
_analyses_lock = threading.Lock()


def _analysis_for(ctx: AppContext, data: bytes) -> ProbeAnalysis:
    key = hashlib.sha256(data).hexdigest()
    with _analyses_lock:
        found = _analyses.get(key)
    if found is not None:
        return found
    analysis = analyze_upload(ctx, data)
    _remember_analysis(analysis)
    return analysis


def _remember_analysis(analysis: ProbeAnalysis) -> None:
    with _analyses_lock:
        _analyses[analysis.sha256] = analysis
        _analyses.move_to_end(analysis.sha256)
        while len(_analyses) > _ANALYSES_MAX:
            _analyses.popitem(last=False)


def hold_probe(ctx: AppContext, probe: PendingProbe) -> str:
    _remember_analysis(probe.analysis)
    return held_probes.hold(ctx, probe.user_id, probe.data, probe.fields)


def peek_probe(ctx: AppContext, token: str, user_id: int | None) -> PendingProbe | None:
    held = held_probes.peek(ctx, token, user_id)
    if held is None:
        return None
    return PendingProbe(held.user_id, held.data, _analysis_for(ctx, held.data), held.fields)


def take_probe(ctx: AppContext, token: str, user_id: int | None) -> None:
    held_probes.take(ctx, token, user_id)


def remember_searched_face(ctx: AppContext, search_id: int, aligned_jpeg: bytes) -> None:
    held_probes.remember_face(ctx, search_id, aligned_jpeg)


def searched_face(
    ctx: AppContext, search_id: int, probe_sha256: str, probe_stored: bool, face_index: int
) -> bytes | None:
    """The aligned face that was searched: held in the database for an hour after the search, or re-derived
    from the stored probe when the policy keeps probes; None when neither (the page says it is not retained)."""
    jpeg = held_probes.searched_face(ctx, search_id)
    if jpeg is not None or not probe_stored:
        return jpeg
    data = probe_store(ctx).get(probe_sha256)
    if data is None:
        return None
    pipeline = pipeline_for(ctx.settings)
    from facetrail.faces.pipeline import PIPELINE_LOCK

    with PIPELINE_LOCK:
        image = pipeline.decode(data)
        faces = pipeline.analyze(image, embed=False)
    if not 0 <= face_index < len(faces):
        return None
    jpeg = encode_jpeg(faces[face_index].aligned)
    remember_searched_face(ctx, search_id, jpeg)
    return jpeg


def annotated_preview(ctx: AppContext, data: bytes, analysis: ProbeAnalysis) -> bytes:
    """The probe, scaled down, with each face's box and number drawn (green passes, red fails quality)."""
    pixels = pipeline_for(ctx.settings).decode(data).pixels
    scale = min(1.0, PREVIEW_MAX_SIDE / max(pixels.shape[:2]))
    canvas: np.ndarray = (
        cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1.0 else pixels.copy()
    )
    thickness = max(2, round(max(canvas.shape[:2]) / 320))
    for face in analysis.faces:
        b = face.box
        x, y = round(b["x"] * scale), round(b["y"] * scale)
        w, h = round(b["width"] * scale), round(b["height"] * scale)
        colour = (40, 40, 220) if not face.passes_quality else (60, 170, 60)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, thickness)
        label = str(face.index + 1)
        size = 0.5 * thickness
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, size, thickness)
        top = max(0, y - th - 2 * thickness)
        cv2.rectangle(canvas, (x, top), (x + tw + 2 * thickness, top + th + 2 * thickness), colour, -1)
        cv2.putText(
            canvas,
            label,
            (x + thickness, top + th + thickness),
            cv2.FONT_HERSHEY_SIMPLEX,
            size,
            (255, 255, 255),
            thickness,
        )
    return encode_jpeg(canvas)
