"""Settings sources as docs/configuration.md describes them: defaults < TOML file < environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from facetrail.config import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACETRAIL_CONFIG", raising=False)
    s = Settings()
    assert s.images.max_bytes == 40 * 1024 * 1024
    assert s.images.max_pixels == 50_000_000
    assert s.detection.detector == "yunet"
    assert s.verify.target_fmr == 1e-3


def test_toml_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "facetrail.toml"
    config.write_text('[images]\nmax_bytes = 1000\nmin_side = 20\n\n[detection]\ndetector = "retinaface"\n')
    monkeypatch.setenv("FACETRAIL_CONFIG", str(config))
    monkeypatch.setenv("FACETRAIL_IMAGES__MAX_BYTES", "555")
    s = Settings()
    assert s.images.max_bytes == 555  # the environment wins over the file
    assert s.images.min_side == 20  # the file wins over the default; the rest of [images] is untouched
    assert s.images.max_pixels == 50_000_000
    assert s.detection.detector == "retinaface"


def test_nested_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACETRAIL_CONFIG", raising=False)
    monkeypatch.setenv("FACETRAIL_DETECTION__MIN_EYE_DISTANCE_PX", "12.5")
    monkeypatch.setenv("FACETRAIL_QUALITY__MIN_SHARPNESS_WARN", "80")
    monkeypatch.setenv("FACETRAIL_VERIFY__TARGET_FMR", "1e-4")
    monkeypatch.setenv("FACETRAIL_EMBEDDING__FLIP_AUGMENT", "false")
    s = Settings()
    assert s.detection.min_eye_distance_px == 12.5
    assert s.quality.min_sharpness_warn == 80
    assert s.verify.target_fmr == 1e-4
    assert s.embedding.flip_augment is False
