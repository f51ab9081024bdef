"""FaceTrail errors → HTTP statuses and stable JSON bodies: {"error": {"code", "message", "details"?}}."""

from __future__ import annotations

from facetrail.errors import FaceTrailError


def status_for(error: FaceTrailError) -> int:
    """The HTTP status an error class carries (facetrail.errors: the class hierarchy is the mapping)."""
    return int(error.http_status)


def error_body(code: str, message: str, details: dict[str, object] | None = None) -> dict[str, object]:
    body: dict[str, object] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}
