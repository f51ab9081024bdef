"""Galleries: lawfully held sets of enrolled faces, bulk enrollment, and the original-image store."""

from facetrail.gallery.service import (
    FaceNotFoundError,
    GalleryExistsError,
    GalleryNotFoundError,
    GallerySummary,
    SubjectNotFoundError,
    create_gallery,
    get_gallery,
    get_subject,
    list_galleries,
)

__all__ = [
    "FaceNotFoundError",
    "GalleryExistsError",
    "GalleryNotFoundError",
    "GallerySummary",
    "SubjectNotFoundError",
    "create_gallery",
    "get_gallery",
    "get_subject",
    "list_galleries",
]
