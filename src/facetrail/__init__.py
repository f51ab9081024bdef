"""FaceTrail: accountable face search for investigative agencies.

The small public API (in the spirit of face_recognition's ``api.py``)::

    import facetrail
    faces = facetrail.detect_faces("photo.jpg")        # boxes, landmarks, quality verdicts
    result = facetrail.verify("a.jpg", "b.jpg")         # similarity, decision, estimated false-match rate

Everything a search returns is an investigative lead, never an identification.
"""

from facetrail.api import detect_faces, embed_faces, verify

__all__ = ["detect_faces", "embed_faces", "verify"]
__version__ = "0.1.0"
