"""Shared fixtures for the face-pipeline tests: one pipeline per test process (models load once)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright, one per test process for every suite (tests/web, tests/identity,
    tests/cluster): a second sync_playwright in the same process fails ("Sync API inside the asyncio loop").
    Skipped only where chromium is absent and CI is not set."""
    if not Path("/usr/bin/chromium").exists():
        if os.environ.get("CI") == "true":
            raise RuntimeError("CI needs /usr/bin/chromium")
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            yield b
        finally:
            b.close()
