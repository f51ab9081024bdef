"""Enhancement operations (examination.enhance): only the seven offered, parameters validated, and replay of the
original plus the log gives the identical SHA-256 for any sequence of steps (hypothesis)."""

from __future__ import annotations

import hashlib
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from facetrail.config import ImageLimits
from facetrail.examination import enhance
from facetrail.examination.enhance import EnhancementError, Operation

LIMITS = ImageLimits()


def _original() -> bytes:
    rng = np.random.default_rng(15)
    pixels = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    pixels[10:30, 8:32] //= 2  # some structure
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    return data.tobytes()


ORIGINAL = _original()

STEPS = st.one_of(
    st.builds(lambda o: ("brightness", {"delta": o}), st.integers(-100, 100)),
    st.builds(lambda f: ("contrast", {"factor": f}), st.floats(0.2, 3.0)),
    st.builds(lambda g: ("gamma", {"gamma": g}), st.floats(0.2, 5.0)),
    st.builds(lambda d: ("rotation", {"degrees": d}), st.sampled_from([90, 180, 270, -90])),
    st.builds(lambda x, y: ("crop", {"x": x, "y": y, "width": 8, "height": 8}), st.integers(0, 8), st.integers(0, 8)),
    st.builds(lambda a, s: ("sharpen", {"amount": a, "sigma": s}), st.floats(0.1, 3.0), st.floats(0.5, 5.0)),
    st.builds(lambda k: ("denoise", {"size": k}), st.sampled_from([3, 5, 7])),
)


def _replay_or_skip(steps: list[tuple[str, dict[str, Any]]]) -> enhance.EnhancedImage:
    try:
        return enhance.replay(ORIGINAL, steps, LIMITS)
    except EnhancementError:  # a crop outside an image an earlier crop made smaller: refused, as it must be
        assume(False)
        raise


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEPS, min_size=0, max_size=6))
def test_replay_of_the_original_and_the_log_gives_the_identical_hash(steps: list[tuple[str, dict[str, Any]]]) -> None:
    first = _replay_or_skip(steps)
    # the log records the normalised parameters: replaying those gives the same image too
    logged = [(op, enhance.normalise(op, params)) for op, params in steps]
    again = enhance.replay(ORIGINAL, logged, LIMITS)
    assert again.sha256 == first.sha256 and again.pixels_sha256 == first.pixels_sha256
    assert first.sha256 == hashlib.sha256(first.png).hexdigest()
    # the original is untouched: decoding it again gives the same pixels as before
    assert enhance.pixels_hash(enhance.decode(ORIGINAL, LIMITS)) == enhance.pixels_hash(
        enhance.decode(ORIGINAL, LIMITS)
    )


@settings(max_examples=25, deadline=None)
@given(st.lists(STEPS, min_size=1, max_size=4), st.integers(0, 255))
def test_a_changed_parameter_or_original_gives_a_different_image(
    steps: list[tuple[str, dict[str, Any]]], value: int
) -> None:
    """What tampering with the log or the original would need: any change shows in the hash."""
    base = _replay_or_skip([("brightness", {"delta": 40}), *steps])
    other = enhance.replay(ORIGINAL, [("brightness", {"delta": -40}), *steps], LIMITS)
    pixels = enhance.decode(ORIGINAL, LIMITS)
    if base.pixels_sha256 != other.pixels_sha256:
        assert base.sha256 != other.sha256
    changed = pixels.copy()
    changed[0, 0, 0] = (int(changed[0, 0, 0]) + 1 + value) % 256 if value % 256 != 255 else (changed[0, 0, 0] ^ 1)
    assert enhance.pixels_hash(changed) != enhance.pixels_hash(pixels)


def test_the_offered_operations_are_exactly_the_seven() -> None:
    assert {o.value for o in Operation} == {
        "brightness",
        "contrast",
        "gamma",
        "rotation",
        "crop",
        "sharpen",
        "denoise",
    }


@pytest.mark.parametrize("name", (*enhance.NOT_OFFERED, "", "BRIGHTNESS!", "exec"))
def test_operations_that_add_content_are_not_offered(name: str) -> None:
    with pytest.raises(EnhancementError) as err:
        enhance.parse_operation(name)
    assert err.value.code == "enhancement_invalid"


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("brightness", {"delta": 101}),
        ("brightness", {"delta": True}),
        ("brightness", {"delta": "5"}),
        ("brightness", {"delta": 5, "mask": [1, 2]}),  # no hidden extra parameter
        ("contrast", {"factor": float("nan")}),
        ("gamma", {"gamma": 0}),
        ("rotation", {"degrees": 45}),  # exact quarter turns only: nothing interpolated
        ("crop", {"x": 0, "y": 0, "width": 4, "height": 4}),
        ("crop", {"x": 40, "y": 0, "width": 8, "height": 8}),  # outside the 40-wide image
        ("sharpen", {"amount": 10, "sigma": 1}),
        ("denoise", {"size": 4}),
        ("brightness", {"delta": 10**400}),  # too large for a float: refused, not a server error
        ("contrast", {"factor": 10**400}),
    ],
)
def test_parameters_out_of_range_are_refused(operation: str, params: dict[str, Any]) -> None:
    with pytest.raises(EnhancementError):
        enhance.replay(ORIGINAL, [(operation, params)], LIMITS)


def test_rotation_and_crop_are_exact() -> None:
    pixels = enhance.decode(ORIGINAL, LIMITS)
    turned = enhance.apply(pixels, "rotation", {"degrees": 90})
    assert turned.shape == (40, 48, 3)
    back = enhance.apply(
        enhance.apply(enhance.apply(turned, "rotation", {"degrees": 90}), "rotation", {"degrees": 90}),
        "rotation",
        {"degrees": 90},
    )
    assert np.array_equal(back, pixels)
    crop = enhance.apply(pixels, "crop", {"x": 2, "y": 3, "width": 10, "height": 12})
    assert np.array_equal(crop, pixels[3:15, 2:12])
    assert enhance.apply(pixels, "brightness", {"delta": 0}).tobytes() == pixels.tobytes()
