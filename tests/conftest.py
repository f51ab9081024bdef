"""Shared fixtures: the fixture-photo paths and one pipeline per test process (models load once)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facetrail.config import Settings
from facetrail.faces.pipeline import FacePipeline, get_pipeline

FIXTURES = Path(__file__).parent / "fixtures"
OBAMA = FIXTURES / "face_recognition" / "obama.jpg"
OBAMA2 = FIXTURES / "face_recognition" / "obama2.jpg"
BIDEN = FIXTURES / "face_recognition" / "biden.jpg"
TWO_PEOPLE = FIXTURES / "face_recognition" / "two_people.jpg"
BLANK_WHITE = FIXTURES / "nonface" / "blank_white.png"
CARS = FIXTURES / "dlib" / "faces" / "mmod_cars_test_image.jpg"
DOGS = FIXTURES / "dlib" / "faces" / "dogs.jpg"
DLIB_FACES = FIXTURES / "dlib" / "faces"
WEBP_NAMED_JPG = FIXTURES / "deepface" / "img47.jpg"


@pytest.fixture(scope="session")
def pipeline() -> FacePipeline:
    """The default pipeline (YuNet + SFace), shared with the CLI and API through get_pipeline's cache."""
    return get_pipeline(Settings())


@pytest.fixture(scope="session")
def obama_rgb() -> Image.Image:
    """A real portrait, downscaled so that format round-trips stay fast (face still ~55 px between the eyes)."""
    with Image.open(OBAMA) as im:
        im = im.convert("RGB")
        return im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
