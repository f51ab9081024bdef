"""Errors with stable codes. The CLI maps them to exit codes, the API to HTTP statuses."""

from __future__ import annotations


class FaceTrailError(Exception):
    """Base class. ``code`` is stable and documented; ``message`` names the problem."""

    code = "error"
    exit_code = 1

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


class ImageTooManyPixelsError(ImageError):
    """Also raised for decompression bombs: checked from the header, before decoding pixels."""

    code = "image_too_many_pixels"


class ImageNotFoundError(ImageError):
    code = "image_not_found"


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


class FaceIndexError(BadInputError):
    """A face number was asked for that the image does not have."""

    code = "face_index_out_of_range"


class ModelError(FaceTrailError):
    """A model could not be loaded, or embeddings of different models were compared."""

    code = "model_error"
    exit_code = 5


class ModelMismatchError(ModelError):
    code = "model_mismatch"
