"""Paths of the fixture photos and small helpers shared by the face-pipeline tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"
OBAMA = FIXTURES / "face_recognition" / "obama.jpg"
OBAMA2 = FIXTURES / "face_recognition" / "obama2.jpg"
BIDEN = FIXTURES / "face_recognition" / "biden.jpg"
TWO_PEOPLE = FIXTURES / "face_recognition" / "two_people.jpg"
BLANK_WHITE = FIXTURES / "nonface" / "blank_white.png"
DLIB_FACES = FIXTURES / "dlib" / "faces"
CARS = DLIB_FACES / "mmod_cars_test_image.jpg"
DOGS = DLIB_FACES / "dogs.jpg"
JOHNS = FIXTURES / "dlib" / "johns"
FACEAPI = FIXTURES / "faceapi"
WEBP_NAMED_JPG = FIXTURES / "deepface" / "img47.jpg"


def calibration_tables() -> list[str]:
    """Names of the calibration tables that ship with the package (verify needs the one for its model)."""
    from importlib import resources

    folder = resources.files("facetrail.faces") / "calibration"
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".json")) if folder.is_dir() else []


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
