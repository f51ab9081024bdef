"""The `facetrail detect` and `facetrail verify` commands: stable JSON schemas and exit codes (docs/cli.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from face_fixtures import BLANK_WHITE, OBAMA, OBAMA2, TWO_PEOPLE, calibration_tables
from facetrail.cli.main import app
from facetrail.faces.calibration import load_calibration
from facetrail.faces.pipeline import FacePipeline

runner = CliRunner()
LANDMARKS = {"right_eye", "left_eye", "nose", "right_mouth", "left_mouth"}


def _json(args: list[str], expected_exit: int) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == expected_exit, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


@pytest.fixture(autouse=True)
def _shared_pipeline(pipeline: FacePipeline) -> None:
    """The CLI uses get_pipeline(); requesting the session fixture first means models load once."""


# --- detect -----------------------------------------------------------------------------------------------


def test_detect_json_schema() -> None:
    out = _json(["detect", "--json", str(TWO_PEOPLE)], 0)
    assert set(out) == {"ok", "image", "detector", "faces"}
    assert out["ok"] is True
    assert set(out["image"]) == {"path", "sha256", "format", "width", "height", "exif_rotated"}
    assert out["image"]["format"] == "JPEG" and len(out["image"]["sha256"]) == 64
    assert out["detector"].startswith("yunet-2023mar-int8bq@")
    assert len(out["faces"]) == 2
    for i, face in enumerate(out["faces"]):
        assert set(face) == {"index", "box", "landmarks", "detection_score", "quality"}
        assert face["index"] == i
        assert set(face["box"]) == {"x", "y", "width", "height"}
        assert set(face["landmarks"]) == LANDMARKS
        assert all(len(p) == 2 for p in face["landmarks"].values())
        assert 0 < face["detection_score"] <= 1
        assert face["quality"]["verdict"] in ("pass", "warn", "fail")
        assert isinstance(face["quality"]["reasons"], list)
        assert "eye_distance_px" in face["quality"]["measures"]
    assert out["faces"][0]["box"]["width"] * out["faces"][0]["box"]["height"] >= (
        out["faces"][1]["box"]["width"] * out["faces"][1]["box"]["height"]
    )


def test_detect_table_output() -> None:
    result = runner.invoke(app, ["detect", str(OBAMA)])
    assert result.exit_code == 0
    assert "1 face(s)" in result.stdout


def test_detect_no_face_exit_4() -> None:
    out = _json(["detect", "--json", str(BLANK_WHITE)], 4)
    assert out["faces"] == []


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"just some text, not an image\n", "image_unsupported_format"),
        (b"", "image_empty"),
        (OBAMA.read_bytes()[:5000], "image_truncated"),  # cut inside the EXIF header
        (OBAMA.read_bytes()[:100_000], "image_truncated"),  # cut inside the pixel data
    ],
    ids=["text", "empty", "truncated_header", "truncated_data"],
)
def test_detect_bad_input_exit_3(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "upload.jpg"
    path.write_bytes(content)
    out = _json(["detect", "--json", str(path)], 3)
    assert out["ok"] is False
    assert out["error"]["code"] == code
    assert out["error"]["message"]


def test_detect_missing_file_exit_3(tmp_path: Path) -> None:
    out = _json(["detect", "--json", str(tmp_path / "nope.jpg")], 3)
    assert out["error"]["code"] == "image_not_found"
    assert "not found" in out["error"]["message"]


def test_detect_error_without_json_goes_to_stderr(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    result = runner.invoke(app, ["detect", str(path)])
    assert result.exit_code == 3
    assert "image_unsupported_format" in result.stderr
    assert result.stdout == ""


def test_detect_annotate_writes_png(tmp_path: Path) -> None:
    target = tmp_path / "out" / "annotated.png"
    out = _json(["detect", "--json", "--annotate", str(target), str(TWO_PEOPLE)], 0)
    assert out["annotated"] == str(target)
    with Image.open(target) as im:
        assert im.format == "PNG"
        assert im.size == (out["image"]["width"], out["image"]["height"])


def test_detect_annotate_other_suffix_becomes_png(tmp_path: Path) -> None:
    out = _json(["detect", "--json", "--annotate", str(tmp_path / "annotated.out"), str(OBAMA)], 0)
    assert out["annotated"] == str(tmp_path / "annotated.png")
    with Image.open(out["annotated"]) as im:
        assert im.format == "PNG"


# --- verify -----------------------------------------------------------------------------------------------


def test_verify_face_index_out_of_range_exit_3() -> None:
    out = _json(["verify", "--json", "--face-a", "5", str(OBAMA), str(OBAMA2)], 3)
    assert out["ok"] is False
    assert out["error"]["code"] == "face_index_out_of_range"
    assert "face 5 was asked for, but the image has 1 face(s)" in out["error"]["message"]


def test_verify_face_index_message_without_json() -> None:
    result = runner.invoke(app, ["verify", "--face-b", "2", str(OBAMA), str(TWO_PEOPLE)])
    assert result.exit_code == 3
    assert "face 2 was asked for, but the image has 2 face(s)" in " ".join(result.stderr.split())


def test_verify_no_face_exit_4() -> None:
    out = _json(["verify", "--json", str(OBAMA), str(BLANK_WHITE)], 4)
    assert out["error"]["code"] == "no_face"


def test_verify_bad_input_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "a.pdf"
    path.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" * 10)
    out = _json(["verify", "--json", str(path), str(OBAMA)], 3)
    assert out["error"]["code"] == "image_unsupported_format"


@pytest.fixture
def calibrated(pipeline: FacePipeline) -> None:
    """Skip only while no calibration table ships at all; a table that does not load is a failure."""
    if not calibration_tables():
        pytest.skip("verify needs a calibration table (faces/calibration/*.json), which has not landed yet")
    load_calibration(pipeline.model_id)


def test_verify_json_same_person(calibrated: None, pipeline: FacePipeline) -> None:
    out = _json(["verify", "--json", str(OBAMA), str(OBAMA2)], 0)
    assert set(out) >= {
        "ok",
        "similarity",
        "threshold",
        "target_fmr",
        "above_threshold",
        "decision",
        "estimated_fmr",
        "meaning",
        "model_id",
        "image_a",
        "image_b",
    }
    assert out["ok"] is True
    assert out["model_id"] == pipeline.model_id
    assert out["similarity"] > out["threshold"]
    assert out["above_threshold"] is True and out["decision"] == "same_person_likely"
    assert 0 < out["estimated_fmr"] <= out["target_fmr"]
    for side in ("image_a", "image_b"):
        assert set(out[side]) == {"sha256", "faces", "face"}
        assert out[side]["faces"] == 1
        assert out[side]["face"]["index"] == 0


def test_verify_json_different_people_and_face_choice(calibrated: None) -> None:
    obama = _json(["verify", "--json", str(OBAMA), str(TWO_PEOPLE), "--face-b", "0"], 0)
    other = _json(["verify", "--json", str(OBAMA), str(TWO_PEOPLE), "--face-b", "1"], 0)
    assert obama["image_b"]["faces"] == 2 and obama["image_b"]["face"]["index"] == 0
    assert other["image_b"]["face"]["index"] == 1
    # two_people.jpg is Obama and Biden: exactly one of its faces matches the Obama portrait
    assert sorted([obama["above_threshold"], other["above_threshold"]]) == [False, True]
    below = obama if not obama["above_threshold"] else other
    assert below["decision"] == "not_established"
    assert below["estimated_fmr"] > below["target_fmr"]


def test_verify_table_output(calibrated: None) -> None:
    result = runner.invoke(app, ["verify", str(OBAMA), str(OBAMA2)])
    assert result.exit_code == 0
    assert "similarity" in result.stdout
    assert "not an identification" in result.stdout
