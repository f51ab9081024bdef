"""Calibration: impostor scores over all different-person pairs, the table's round trip through JSON, and the
shipped SFace table's consistency."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from facetrail.errors import ModelError
from facetrail.evaluation.calibrate import impostor_scores
from facetrail.faces.calibration import Calibration, build_calibration, load_calibration

SFACE_FLIP_ID = "sface-2021dec-int8bq+flip@fb143eea07838aa5"


def _from_json(data: dict[str, object]) -> Calibration:
    text = json.loads(json.dumps(data))  # through real JSON text, as the shipped file is
    table = np.array(text["table"], dtype=np.float64)
    return Calibration(
        text["model_id"],
        text["impostor_comparisons"],
        text["genuine_comparisons"],
        table[:, 0],
        table[:, 1],
        text["source"],
    )


def test_impostor_scores_are_every_different_label_pair_once() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(37, 8)).astype(np.float32)
    labels = rng.integers(0, 9, size=37)
    scores, genuine = impostor_scores(vectors, labels, block=5)  # several blocks, ragged last one
    expected = sorted(
        float(vectors[i] @ vectors[j]) for i in range(37) for j in range(i + 1, 37) if labels[i] != labels[j]
    )
    assert np.allclose(np.sort(scores), expected, atol=1e-5)
    counts = np.bincount(labels)
    assert genuine == int(sum(c * (c - 1) // 2 for c in counts))


def test_table_round_trip_is_monotone_and_consistent() -> None:
    rng = np.random.default_rng(1)
    impostors = np.clip(rng.normal(0.05, 0.1, 200_000), -1, 1)
    built = build_calibration("m@0123", impostors, genuine_count=500, source="synthetic")
    loaded = _from_json(built.to_json())
    assert loaded.impostor_comparisons == 200_000 and loaded.genuine_comparisons == 500
    grid = np.linspace(-0.5, 1.0, 301)
    fmr = np.array([loaded.fmr_at(s) for s in grid])
    assert np.all(np.diff(fmr) <= 1e-15)  # never rises with the score
    assert fmr.min() >= loaded.resolution  # never reported as zero
    for target in (1e-1, 1e-2, 1e-3, 1e-4):
        threshold = loaded.threshold_for(target)
        assert loaded.fmr_at(threshold) <= target * 1.0001
        # And the table agrees with the raw scores it summarises (rounding of the threshold aside).
        assert np.mean(impostors >= threshold) == pytest.approx(target, rel=0.05, abs=2 / 200_000)


@pytest.fixture(scope="module")
def shipped() -> Calibration:
    if not (resources.files("facetrail.faces") / "calibration" / "sface-2021dec-int8bq+flip.json").is_file():
        pytest.fail("the SFace calibration table must ship with the package")
    return load_calibration(SFACE_FLIP_ID)


def test_shipped_sface_table_resolves_one_in_a_million(shipped: Calibration) -> None:
    assert shipped.model_id == SFACE_FLIP_ID
    assert shipped.impostor_comparisons >= 20_000_000
    assert shipped.genuine_comparisons > 100_000
    assert shipped.resolution < 1e-6
    thresholds = [shipped.threshold_for(f) for f in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)]
    assert thresholds == sorted(thresholds) and len(set(thresholds)) == 5  # stricter FMR, higher score
    for f, t in zip((1e-2, 1e-3, 1e-4, 1e-5, 1e-6), thresholds, strict=True):
        assert shipped.fmr_at(t) <= f * 1.0001
    assert np.all(np.diff(shipped.fmr) <= 0) and np.all(np.diff(shipped.scores) > 0)


def test_a_table_refuses_another_models_weights() -> None:
    with pytest.raises(ModelError):
        load_calibration("sface-2021dec-int8bq+flip@0000000000000000")
    with pytest.raises(ModelError):
        load_calibration("no-such-model@0000000000000000")


@pytest.mark.parametrize("embedder", ["dlib", "fusion"])
def test_dlib_and_fusion_ship_tables_that_separate_a_same_and_a_different_pair(embedder: str) -> None:
    """The shipped tables match the embedders' exact model ids (weights hashes), so verify works with them."""
    from face_fixtures import FIXTURES
    from facetrail.api import verify
    from facetrail.config import EmbeddingSettings, Settings

    settings = Settings(embedding=EmbeddingSettings(embedder=embedder))
    people = FIXTURES / "face_recognition"
    same = verify(people / "obama.jpg", people / "obama2.jpg", settings=settings)
    different = verify(people / "obama.jpg", people / "biden.jpg", settings=settings)
    assert same.model_id == different.model_id and same.model_id.startswith(embedder.split("-")[0])
    assert same.above_threshold and not different.above_threshold
    assert same.estimated_fmr < 1e-4 < different.estimated_fmr
