"""Shared fixtures for the face-pipeline tests: one pipeline per test process (models load once)."""

from __future__ import annotations

import pytest
from PIL import Image

from face_fixtures import OBAMA
from facetrail.config import Settings
from facetrail.faces.pipeline import FacePipeline, get_pipeline


@pytest.fixture(scope="session")
def pipeline() -> FacePipeline:
    """The default pipeline (YuNet + SFace), shared with the CLI and API through get_pipeline's cache."""
    return get_pipeline(Settings())


@pytest.fixture(scope="session")
def obama_rgb() -> Image.Image:
    """A real portrait, halved so that format round-trips stay fast (still ~57 px between the eyes)."""
    with Image.open(OBAMA) as im:
        rgb = im.convert("RGB")
    return rgb.resize((rgb.width // 2, rgb.height // 2), Image.Resampling.LANCZOS)
