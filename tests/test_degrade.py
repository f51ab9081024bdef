"""The degraded-probe protocol: the spec grammar, deterministic degradations, eye-distance scaling, the
refining detector passes, the quality expectation table and the demographic-differentials report."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from face_fixtures import BIDEN, OBAMA, OBAMA2
from facetrail.errors import BadInputError
from facetrail.evaluation.degrade import ORDER, degrade, degraded_landmarks, image_seed, parse_spec

# --- the grammar ---------------------------------------------------------------------------------------------


def test_canonical_text_ignores_order_and_case() -> None:
    assert parse_spec("JPEG=20+eye=16").text == "eye=16+jpeg=20"
    assert parse_spec("clean").is_clean and parse_spec(" clean ").text == "clean"
    assert parse_spec("rotate=+-30").text == "rotate=+-30"
    assert parse_spec("motion=9@45+gamma=2.5+noise=10").text == "motion=9@45+gamma=2.5+noise=10"
    assert parse_spec("occlude=Lower").text == "occlude=lower"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty degrade spec"),
        ("eye", "NAME=VALUE"),
        ("eye=", "NAME=VALUE"),
        ("zoom=2", "unknown step 'zoom'"),
        ("eye=16+eye=24", "appears twice"),
        ("eye=2", "eye must be in 4..200"),
        ("jpeg=0", "jpeg must be in 1..100"),
        ("jpeg=20.5", "whole number"),
        ("blur=abc", "not a number"),
        ("blur=nan", "not a finite number"),
        ("occlude=hat", "occlude is one of lower, eyes"),
        ("motion=9@200", "motion direction"),
        ("rotate=120", "rotate must be in -90..90"),
        ("eye=16++jpeg=20", "empty step"),
        ("eye=16+", "empty step"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(spec: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_spec(spec)


STEP_VALUES = {
    "eye": st.integers(8, 64).map(str),
    "jpeg": st.integers(5, 95).map(str),
    "blur": st.sampled_from(["0.5", "1", "2.5", "4"]),
    "motion": st.tuples(st.integers(3, 15), st.integers(0, 180)).map(lambda t: f"{t[0]}@{t[1]}"),
    "gamma": st.sampled_from(["1.5", "2", "3"]),
    "noise": st.integers(0, 30).map(str),
    "occlude": st.sampled_from(["lower", "eyes"]),
    "rotate": st.sampled_from(["+-30", "15", "-20", "0"]),
}


@st.composite
def specs(draw: st.DrawFn) -> str:
    names = draw(st.lists(st.sampled_from(ORDER), min_size=1, max_size=4, unique=True))
    return "+".join(f"{n}={draw(STEP_VALUES[n])}" for n in names)


@given(specs())
@settings(max_examples=60, deadline=None)
def test_every_valid_spec_round_trips(text: str) -> None:
    spec = parse_spec(text)
    assert parse_spec(spec.text) == spec
    assert [s.name for s in spec.steps] == [n for n in ORDER if n in {s.name for s in spec.steps}]


@given(st.text(max_size=30))
@settings(max_examples=200, deadline=None)
def test_arbitrary_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        spec = parse_spec(text)
    except BadInputError as exc:
        assert str(exc)
    else:
        assert parse_spec(spec.text) == spec


# --- the degradations --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, np.ndarray]:
    """A fixture photo and its face's landmarks from the production detector."""
    from facetrail.faces.pipeline import get_pipeline

    pipeline = get_pipeline()
    image = pipeline.decode_path(OBAMA)
    return image.pixels, pipeline.detect(image)[0].landmarks


@given(specs(), st.integers(0, 2**32))
@settings(max_examples=25, deadline=None)
def test_same_seed_same_bytes(photo: tuple[np.ndarray, np.ndarray], text: str, seed: int) -> None:
    pixels, landmarks = photo
    spec = parse_spec(text)
    first = degrade(pixels, spec, landmarks=landmarks, seed=seed)
    again = degrade(pixels.copy(), spec, landmarks=landmarks.copy(), seed=seed)
    assert first.dtype == np.uint8 and first.ndim == 3
    assert hashlib.sha256(first.tobytes()).digest() == hashlib.sha256(again.tobytes()).digest()


def test_seeded_steps_differ_between_seeds(photo: tuple[np.ndarray, np.ndarray]) -> None:
    pixels, _landmarks = photo
    spec = parse_spec("noise=10")
    assert not np.array_equal(degrade(pixels, spec, seed=1), degrade(pixels, spec, seed=2))
    assert image_seed(spec, "a.jpg") != image_seed(spec, "b.jpg")
    assert image_seed(spec, "a.jpg", 0) != image_seed(spec, "a.jpg", 1)
    assert image_seed(spec, "a.jpg") == image_seed(parse_spec("noise=10"), "a.jpg")


def test_face_relative_steps_need_landmarks(photo: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(BadInputError, match="needs the face's landmarks"):
        degrade(photo[0], parse_spec("eye=16"))


@pytest.mark.parametrize("path", [OBAMA, OBAMA2, BIDEN])
@pytest.mark.parametrize("target", [48, 32, 24, 16, 12])
def test_eye_scaling_hits_its_target_within_a_pixel(path: Path, target: int) -> None:
    from facetrail.faces.pipeline import get_pipeline

    pipeline = get_pipeline()
    image = pipeline.decode_path(path)
    landmarks = pipeline.detect(image)[0].landmarks
    spec = parse_spec(f"eye={target}")
    out = degrade(image.pixels, spec, landmarks=landmarks)
    moved = degraded_landmarks(spec, landmarks, image.width, image.height)
    assert abs(float(np.linalg.norm(moved[1] - moved[0])) - target) < 1.0
    scale = target / float(np.linalg.norm(landmarks[1] - landmarks[0]))
    assert abs(out.shape[1] - image.width * scale) <= 1 and abs(out.shape[0] - image.height * scale) <= 1
    if target >= 24:  # the detector finds the scaled face, and its own eye distance roughly agrees
        from facetrail.faces.detect import detect_faces

        found = detect_faces(out, pipeline.detector, pipeline.settings.detection)
        assert found
        nearest = min(found, key=lambda f: float(np.abs(f.landmarks - moved).sum()))
        assert abs(nearest.eye_distance - target) < 0.2 * target  # YuNet landmarks move with scale


def test_rotation_and_occlusion_move_and_cover_the_face(photo: tuple[np.ndarray, np.ndarray]) -> None:
    pixels, landmarks = photo
    turned = degraded_landmarks(parse_spec("rotate=30"), landmarks, pixels.shape[1], pixels.shape[0])
    dx, dy = turned[1] - turned[0]
    dx0, dy0 = landmarks[1] - landmarks[0]
    assert abs(np.degrees(np.arctan2(dy, dx) - np.arctan2(dy0, dx0)) + 30) < 0.01  # OpenCV: positive = anticlockwise
    masked = degrade(pixels, parse_spec("occlude=lower"), landmarks=landmarks)
    mouth = np.round((landmarks[3] + landmarks[4]) / 2).astype(int)
    assert tuple(masked[mouth[1], mouth[0]]) == (205, 190, 160)
    shaded = degrade(pixels, parse_spec("occlude=eyes"), landmarks=landmarks)
    eye = np.round(landmarks[0]).astype(int)
    assert tuple(shaded[eye[1], eye[0]]) == (22, 22, 22)
    assert np.array_equal(masked[:5], pixels[:5])  # far from the face nothing changes


# --- refining detector passes ------------------------------------------------------------------------------


def test_upright_pass_gives_landmarks_that_follow_a_tilted_head() -> None:
    """YuNet's landmarks turn about half as much as a tilted head; the upright pass recovers the tilt."""
    from facetrail.config import get_settings
    from facetrail.faces.detect import detect_faces
    from facetrail.faces.pipeline import get_pipeline

    pipeline = get_pipeline()
    image = pipeline.decode_path(OBAMA)
    landmarks = pipeline.detect(image)[0].landmarks
    spec = parse_spec("rotate=30")
    turned = degrade(image.pixels, spec, landmarks=landmarks)
    truth = degraded_landmarks(spec, landmarks, image.width, image.height)

    def roll(points: np.ndarray) -> float:
        dx, dy = points[1] - points[0]
        return float(np.degrees(np.arctan2(dy, dx)))

    base = get_settings().detection
    plain = detect_faces(turned, pipeline.detector, base.model_copy(update={"upright_roll_deg": 0.0}))[0]
    upright = detect_faces(turned, pipeline.detector, base.model_copy(update={"upright_roll_deg": 8.0}))[0]
    assert abs(roll(upright.landmarks) - roll(truth)) < abs(roll(plain.landmarks) - roll(truth))
    assert abs(roll(upright.landmarks) - roll(truth)) < 8.0


# --- the expectation table ---------------------------------------------------------------------------------


def test_expectation_text_comes_from_the_shipped_table() -> None:
    from facetrail.faces.quality_expectations import expectation_for, load_expectations

    table = load_expectations("sface-2021dec-int8bq+flip@fb143eea07838aa5")
    assert table is not None
    row = table.eye_row(14.0)
    text = expectation_for(table, eye_distance_px=14.0, sharpness=500.0)
    assert row is not None and "14 px" in text[0]
    assert f"{row['accuracy'] * 100:.1f}%" in text[0]
    assert load_expectations("no-such-model@0") is None


def test_expectation_table_is_rebuilt_by_its_command(tmp_path: Path) -> None:
    """The table is generated from a sweep's scores, not typed: rebuild it from a synthetic sweep."""
    from facetrail.evaluation.quality_table import build_quality_table

    rng = np.random.default_rng(0)
    n = 400
    same = np.tile([True, False], n // 2)
    folds = np.repeat(np.arange(10), n // 10)
    specs_, scores, quality = ["clean", "eye=12"], {}, {}
    for spec, spread, eye in (("clean", 0.05, 40.0), ("eye=12", 0.3, 12.0)):
        scores[spec] = {"m": np.where(same, 0.7, 0.1) + rng.normal(0, spread, n)}
        quality[spec] = {
            "eye_distance_px": np.full(n, eye) + rng.normal(0, 1, n),
            "sharpness": np.full(n, 100.0),
            "brightness": np.full(n, 120.0),
            "roll_deg": np.zeros(n),
        }
    table = build_quality_table("m@1", specs_, same, folds, scores, quality, source="test")
    rows = table["eye_distance"]
    small = next(r for r in rows if r["low"] <= 12 < r.get("high", np.inf))
    large = next(r for r in rows if r["low"] <= 40 < r.get("high", np.inf))
    assert small["accuracy"] < large["accuracy"]
    json.dumps(table)


# --- demographic differentials -------------------------------------------------------------------------------


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_groups_report_on_a_small_manifest(tmp_path: Path) -> None:
    from facetrail.evaluation.differentials import group_differentials, plot_differentials, read_manifest
    from facetrail.evaluation.embedding import EmbeddingSet

    # 6 people, 3 photos each; group A's people are well separated, group B's two people look alike
    rng = np.random.default_rng(1)
    centres = {f"P{i}": rng.normal(0, 1, 16) for i in range(6)}
    centres["P4"] = centres["P3"] + rng.normal(0, 0.05, 16)
    people, paths, vectors = {}, [], []
    for person, centre in centres.items():
        people[person] = [f"{person}/{person}_{k:04d}.jpg" for k in range(1, 4)]
        for path in people[person]:
            v = centre + rng.normal(0, 0.1, 16)
            paths.append(path)
            vectors.append(v / np.linalg.norm(v))
    emb = EmbeddingSet("m@1", "d@1", paths, np.array(vectors, np.float32), np.ones(len(paths), np.int32))
    rows = [{"image": p, "band": "A" if p[1] in "012" else "B", "site": ""} for p in paths]
    rows[0]["site"] = "north"
    manifest = read_manifest(_write_manifest(tmp_path / "groups.csv", rows), paths)
    report = group_differentials(people, emb, manifest, 0.5, "test threshold")
    band = report["attributes"]["band"]  # type: ignore[index]
    assert band["fmr_matrix"]["groups"] == ["A", "B"]
    # B holds the look-alike pair P3/P4: every impostor false match is within B
    assert band["groups"]["B"]["fmr_within"] > 0 and band["groups"]["A"]["fmr_within"] == 0
    assert band["fmr_across_groups"] == 0
    assert band["impostor_pairs_within"] + band["impostor_pairs_across"] == (18 * 17 - 6 * 3 * 2) // 2
    assert band["groups"]["A"]["mated_searches"] + band["groups"]["B"]["mated_searches"] > 0
    assert report["attributes"]["site"]["groups"]["north"]["images"] == 1  # type: ignore[index]
    written = plot_differentials(report, tmp_path, "m")
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("photo,sex\na.jpg,F\n", "'image' column"),
        ("image\na.jpg\n", "no group column"),
        ("image,sex\na.jpg,F\na.jpg,M\n", "listed twice"),
        ("image,sex\nzzz.jpg,F\n", "not in the data set"),
        ("image,sex\n", "lists no image"),
    ],
)
def test_bad_manifests_are_refused(tmp_path: Path, text: str, message: str) -> None:
    from facetrail.evaluation.differentials import read_manifest

    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(BadInputError, match=message):
        read_manifest(path, ["a.jpg"])


# --- the commands, end to end on a tiny LFW-format folder -----------------------------------------------------


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    import shutil

    from test_evaluation import LFW_IMAGES, TINY_PAIRS, TINY_PEOPLE

    if not LFW_IMAGES.is_dir():
        pytest.skip(f"shared LFW data not found at {LFW_IMAGES} (set FACETRAIL_SHARED_DATA)")
    root = tmp_path / "lfw"
    for person, numbers in TINY_PEOPLE.items():
        (root / "images_deepfunneled" / person).mkdir(parents=True)
        for n in numbers:
            name = f"{person}/{person}_{n:04d}.jpg"
            shutil.copy(LFW_IMAGES / name, root / "images_deepfunneled" / name)
    (root / "pairs.txt").write_text(TINY_PAIRS)
    return root


def _cli(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from facetrail.cli.main import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout


@pytest.mark.lfw
def test_eval_lfw_degrade_end_to_end_and_cached(tiny: Path, tmp_path: Path) -> None:
    common = ["--data", str(tiny), "--cache-dir", str(tmp_path / "cache"), "--workers", "1", "--json"]
    code, out = _cli("eval", "lfw", "--degrade", "jpeg=30+eye=24", "--out", str(tmp_path / "o"), *common)
    assert code == 0, out
    first = json.loads(out)
    assert first["degrade"] == "eye=24+jpeg=30" and first["pairs"] == 8 and first["folds"] == 2
    assert 20 < first["probe_eye_distance_median"] < 28
    assert list((tmp_path / "cache" / "degraded").glob("*.npz"))
    code, out = _cli("eval", "lfw", "--degrade", "eye=24+jpeg=30", "--out", str(tmp_path / "o"), *common)
    assert code == 0 and json.loads(out)["roc_auc"] == first["roc_auc"]
    code, out = _cli("eval", "lfw", "--degrade", "zoom=3", "--out", str(tmp_path / "o"), *common)
    assert code == 3 and "unknown step 'zoom'" in out


@pytest.mark.lfw
def test_eval_identify_groups_and_degrade_end_to_end(tiny: Path, tmp_path: Path) -> None:
    from test_evaluation import TINY_PEOPLE

    rows = []
    for person, numbers in TINY_PEOPLE.items():
        for n in numbers:
            rows.append({"image": f"{person}/{person}_{n:04d}.jpg", "band": "X" if person < "Ak" else "Y"})
    manifest = _write_manifest(tmp_path / "groups.csv", rows)
    common = ["--data", str(tiny), "--cache-dir", str(tmp_path / "cache"), "--workers", "1", "--json"]
    out_dir = tmp_path / "o"
    code, out = _cli(
        "eval", "identify", "--groups", str(manifest), "--degrade", "eye=16", "--out", str(out_dir), *common
    )
    assert code == 0, out
    summary = json.loads(out)
    groups = summary["groups"]["attributes"]["band"]
    assert set(groups["groups"]) == {"X", "Y"}
    assert sum(g["mated_searches"] for g in groups["groups"].values()) == summary["degraded"]["mated_probes"]
    assert summary["degraded"]["degrade"] == "eye=16"
    assert (out_dir / f"groups-fnir-band-{summary['groups']['model_id'].split('@')[0]}.png").is_file()


@pytest.mark.lfw
def test_degrade_sweep_and_quality_table_commands(tiny: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    common = ["--data", str(tiny), "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]
    code, out = _cli(
        "eval",
        "degrade-sweep",
        "--levels",
        "clean,eye=16",
        "--models",
        "sface",
        "--pairs-per-fold",
        "2",
        "--out",
        str(sweep),
        *common,
    )
    assert code == 0, out
    data = json.loads((sweep / "degrade-sweep.json").read_text())
    assert [lv["degrade"] for lv in data["levels"]] == ["clean", "eye=16"]
    assert (sweep / "degrade-accuracy-vs-eye.png").read_bytes()[:4] == b"\x89PNG"
    code, out = _cli("eval", "quality-table", "--sweep", str(sweep), "--out", str(tmp_path / "tables"))
    assert code == 0, out
    [table] = list((tmp_path / "tables").glob("quality-*.json"))
    content = json.loads(table.read_text())
    assert content["model_id"].startswith("sface") and content["levels"][0]["degrade"] == "clean"


def test_quality_note_travels_in_the_held_face_jpeg() -> None:
    import cv2

    from facetrail.web.quality_note import attach_quality_note, read_quality_note

    ok, data = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    assert ok
    jpeg = data.tobytes()
    sentences = ["inter-eye distance 14 px: on LFW probes with 14–20 px between the eyes, accuracy was 90.0%"]
    noted = attach_quality_note(jpeg, {"verdict": "warn", "expectations": sentences})
    assert read_quality_note(noted) == sentences
    decoded = cv2.imdecode(np.frombuffer(noted, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded, cv2.imdecode(data, cv2.IMREAD_COLOR))  # the picture is untouched
    assert attach_quality_note(jpeg, {"verdict": "pass", "expectations": []}) == jpeg
    assert read_quality_note(jpeg) == [] and read_quality_note(None) == [] and read_quality_note(b"not a jpeg") == []
    broken = noted.replace(b'"expectations"', b'"expectations!')
    assert read_quality_note(broken) == []
