"""FaceTrail errors → HTTP statuses and stable JSON bodies: {"error": {"code", "message", "details"?}}."""

from __future__ import annotations

from facetrail.errors import (
    BadInputError,
    FaceTrailError,
    ImageTooLargeError,
    ImageTooManyPixelsError,
    ModelError,
    ModelMismatchError,
    NoFaceError,
)


def status_for(error: FaceTrailError) -> int:
    from facetrail.accounts.service import ConflictError, NotFoundError, ThrottledError
    from facetrail.policy.roles import AuthenticationError, PermissionDeniedError

    explicit = getattr(error, "http_status", None)  # an error class may name its own status
    if isinstance(explicit, int):
        return explicit
    # Galleries/subjects/faces that do not exist are "not found" wherever they are raised (before the
    # table: most of them are BadInputErrors, which would otherwise read as 400).
    if error.code.endswith("_not_found"):
        return 404
    table: list[tuple[type[FaceTrailError], int]] = [
        (AuthenticationError, 401),
        (PermissionDeniedError, 403),
        (ThrottledError, 429),
        (NotFoundError, 404),
        (ConflictError, 409),
        (ImageTooLargeError, 413),
        (ImageTooManyPixelsError, 413),
        (NoFaceError, 422),
        (ModelMismatchError, 409),
        (ModelError, 500),
        (BadInputError, 400),
    ]
    for cls, status in table:
        if isinstance(error, cls):
            return status
    return 400


def error_body(code: str, message: str, details: dict[str, object] | None = None) -> dict[str, object]:
    body: dict[str, object] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}
