"""Errors with stable codes, in one place. Each class carries its CLI exit code and its HTTP status: a subclass
inherits both unless it names its own, so the class hierarchy is the one mapping (no table elsewhere).

Every package raises these (or subclasses of them, next to the code that raises them); nothing here imports
any other part of FaceTrail.
"""

from __future__ import annotations


class FaceTrailError(Exception):
    """Base class. ``code`` is stable and documented; ``message`` names the problem."""

    code = "error"
    exit_code = 1
    http_status = 400

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, **({"details": self.details} if self.details else {})}


class BadInputError(FaceTrailError):
    """The caller gave something unusable (a file, a field, an argument)."""

    code = "bad_input"
    exit_code = 3


class ImageError(BadInputError):
    """An image could not be accepted. Subclasses name why."""

    code = "bad_image"


class EmptyImageError(ImageError):
    code = "image_empty"


class ImageTooLargeError(ImageError):
    code = "image_too_large"
    http_status = 413


class ImageTooManyPixelsError(ImageError):
    """Also raised for decompression bombs: checked from the header, before decoding pixels."""

    code = "image_too_many_pixels"
    http_status = 413


class ImageNotFoundError(ImageError):
    code = "image_not_found"
    http_status = 404


class ImageTooSmallError(ImageError):
    code = "image_too_small"


class UnsupportedFormatError(ImageError):
    code = "image_unsupported_format"


class CorruptImageError(ImageError):
    code = "image_corrupt"


class TruncatedImageError(CorruptImageError):
    code = "image_truncated"


class NoFaceError(FaceTrailError):
    code = "no_face"
    exit_code = 4
    http_status = 422


class FaceIndexError(BadInputError):
    """A face number was asked for that the image does not have."""

    code = "face_index_out_of_range"


class ModelError(FaceTrailError):
    """A model could not be loaded, or embeddings of different models were compared."""

    code = "model_error"
    exit_code = 5
    http_status = 500


class ModelMismatchError(ModelError):
    code = "model_mismatch"
    http_status = 409


class DeviceUnavailableError(ModelError):
    """A compute device was asked for (``compute.device``, ``--device``) that this installation cannot use."""

    code = "device_unavailable"


class InvalidRequestError(BadInputError):
    """A request the API could not accept as sent (a missing or malformed field): ``details.problems``."""

    code = "validation_error"
    http_status = 422


class NotFoundError(BadInputError):
    """Something named does not exist, or is outside the caller's scope (which must read the same)."""

    code = "not_found"
    http_status = 404


class ConflictError(BadInputError):
    """The request contradicts the current state (already decided, already exists, on hold)."""

    code = "conflict"
    http_status = 409


class ThrottledError(FaceTrailError):
    code = "too_many_attempts"
    exit_code = 6
    http_status = 429


class AuthenticationError(FaceTrailError):
    code = "unauthenticated"
    exit_code = 6
    http_status = 401


class PermissionDeniedError(FaceTrailError):
    code = "forbidden"
    exit_code = 6
    http_status = 403
