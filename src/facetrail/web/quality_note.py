"""The searched face's quality expectation, carried to the results page inside the held face JPEG.

The results page is answered after a redirect, possibly by another process, and only the searched face's
aligned JPEG is held between the two (``cluster.held_probes``, one hour). The expectation sentences
(``faces.quality_expectations``: what LFW probes of this size and sharpness did) travel in that JPEG's comment
segment (JPEG COM, marker 0xFFFE), so no new storage is needed and they expire with the face. Guarantees:
the image data is untouched (a COM segment is ignored by decoders); a JPEG without the note, or with a
malformed one, reads as no sentences, never as an error; only plain sentences are stored, no identifiers.
"""

from __future__ import annotations

import json

PREFIX = b"facetrail-quality:"


def attach_quality_note(jpeg: bytes, quality: dict[str, object]) -> bytes:
    """``jpeg`` with a comment segment holding the verdict and its expectation sentences."""
    sentences = quality.get("expectations") or []
    if not sentences or not jpeg.startswith(b"\xff\xd8"):
        return jpeg
    note = {"verdict": quality.get("verdict"), "expectations": list(sentences)}  # type: ignore[call-overload]
    payload = PREFIX + json.dumps(note, ensure_ascii=False).encode()
    if len(payload) > 65000:
        return jpeg
    segment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def read_quality_note(jpeg: bytes | None) -> list[str]:
    """The expectation sentences of ``attach_quality_note``, or [] (see the module docstring)."""
    if not jpeg or not jpeg.startswith(b"\xff\xd8"):
        return []
    i = 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker, length = jpeg[i + 1], int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if marker == 0xDA:  # start of scan: no more header segments
            return []
        body = jpeg[i + 4 : i + 2 + length]
        if marker == 0xFE and body.startswith(PREFIX):
            try:
                note = json.loads(body[len(PREFIX) :].decode())
                return [str(s) for s in note.get("expectations", [])]
            except (ValueError, AttributeError):
                return []
        i += 2 + length
    return []
