"""Probe photos between the two steps of a web search, and the searched face for the results page.

Both are held in this process's memory only, briefly, never on disk (a probe is written to disk only when
``keep_probe_images`` says so, by the search core). A pending probe belongs to the user who uploaded it.
The server runs one process (``facetrail serve``), so both survive from one request to the next.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facetrail.cases.probe import ProbeAnalysis, encode_jpeg
from facetrail.context import AppContext
from facetrail.gallery.search import probe_store
from facetrail.gallery.service import pipeline_for

PENDING_SECONDS = 30 * 60
PENDING_MAX = 32
FACES_SECONDS = 60 * 60
FACES_MAX = 256
PREVIEW_MAX_SIDE = 960


@dataclass
class PendingProbe:
    user_id: int | None
    data: bytes
    analysis: ProbeAnalysis
    fields: dict[str, str]
    created: float = field(default_factory=time.monotonic)


class _Expiring:
    """A small LRU of entries that expire; thread-safe (routes run in a thread pool)."""

    def __init__(self, seconds: float, max_entries: int) -> None:
        self.seconds, self.max_entries = seconds, max_entries
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def get(self, key: Any, pop: bool = False) -> Any:
        with self._lock:
            found = self._items.pop(key, None) if pop else self._items.get(key)
            if found is None or time.monotonic() - found[0] > self.seconds:
                return None
            return found[1]


_pending = _Expiring(PENDING_SECONDS, PENDING_MAX)
_searched_faces = _Expiring(FACES_SECONDS, FACES_MAX)


def hold_probe(probe: PendingProbe) -> str:
    token = secrets.token_urlsafe(18)
    _pending.put(token, probe)
    return token


def peek_probe(token: str, user_id: int | None) -> PendingProbe | None:
    probe: PendingProbe | None = _pending.get(token)
    return probe if probe is not None and probe.user_id == user_id else None


def take_probe(token: str, user_id: int | None) -> PendingProbe | None:
    probe = peek_probe(token, user_id)
    if probe is not None:
        _pending.get(token, pop=True)
    return probe


def remember_searched_face(search_id: int, aligned_jpeg: bytes) -> None:
    _searched_faces.put(search_id, aligned_jpeg)


def searched_face(
    ctx: AppContext, search_id: int, probe_sha256: str, probe_stored: bool, face_index: int
) -> bytes | None:
    """The aligned face that was searched: from memory right after the search, or re-derived from the stored
    probe when the policy keeps probes; None when neither (the page says the probe is not retained)."""
    jpeg: bytes | None = _searched_faces.get(search_id)
    if jpeg is not None or not probe_stored:
        return jpeg
    path = probe_store(ctx).path_for(probe_sha256)
    if not path.is_file():
        return None
    pipeline = pipeline_for(ctx.settings)
    from facetrail.faces.pipeline import PIPELINE_LOCK

    with PIPELINE_LOCK:
        image = pipeline.decode(path.read_bytes())
        faces = pipeline.analyze(image, embed=False)
    if not 0 <= face_index < len(faces):
        return None
    jpeg = encode_jpeg(faces[face_index].aligned)
    remember_searched_face(search_id, jpeg)
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
