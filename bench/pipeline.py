"""Face pipeline speed on this machine, FaceTrail's default pipeline side by side with face_recognition's dlib.

    nice -n 5 python bench/pipeline.py --photo /work/shared/data/faces/face_recognition/examples/obama.jpg \
        --folder /work/shared/data/lfw/images_deepfunneled --images 400

1. Per stage, one ~1 MP single-face photo, one process, one thread: ms for decode / detect / align / embed.
2. A folder of images through a process pool of ``--workers`` (2 = both cores): images/s, end to end (read,
   decode, detect every face, align, embed). The dlib baseline is what face_recognition does by default: HOG
   detector with upsample 1, the 5-point shape predictor, the ResNet descriptor (1 jitter).

Results go to the "Pipeline" section of docs/benchmarks.md (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # parallelism comes from the process pool, as in production
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_note, machine_description, now_utc, write_doc_section

DEFAULT_PHOTO = Path("/work/shared/data/faces/face_recognition/examples/obama.jpg")
DEFAULT_FOLDER = Path("/work/shared/data/lfw/images_deepfunneled")


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


# ---- FaceTrail ---------------------------------------------------------------------------------------------


def facetrail_stages(photo: bytes, repeats: int) -> dict[str, float]:
    from facetrail.faces.pipeline import FacePipeline

    pipeline = FacePipeline()
    image = pipeline.decode(photo)
    faces = pipeline.detect(image)
    if not faces:
        raise SystemExit("FaceTrail found no face in the benchmark photo")
    embedder: Any = pipeline.embedder
    crop = embedder.aligned_crop(image.pixels, faces[0])
    return {
        "decode": median_ms(lambda: pipeline.decode(photo), repeats),
        "detect": median_ms(lambda: pipeline.detect(image), repeats),
        "align": median_ms(lambda: embedder.aligned_crop(image.pixels, faces[0]), repeats),
        "embed": median_ms(lambda: embedder.embed_crops([crop]), repeats),
    }


_facetrail_pipeline: Any = None


def _facetrail_init(flip_augment: bool = True) -> None:
    global _facetrail_pipeline
    from facetrail.config import get_settings
    from facetrail.faces.pipeline import FacePipeline

    settings = get_settings()
    settings = settings.model_copy(
        update={"embedding": settings.embedding.model_copy(update={"flip_augment": flip_augment})}
    )
    _facetrail_pipeline = FacePipeline(settings)
    _facetrail_pipeline.detector  # noqa: B018 - load both models before the clock starts
    _facetrail_pipeline.embedder  # noqa: B018


def _facetrail_image(path: str) -> int:
    image = _facetrail_pipeline.decode_path(path)
    return len(_facetrail_pipeline.analyze(image))


# ---- dlib, as face_recognition uses it ---------------------------------------------------------------------


class DlibModels:
    def __init__(self) -> None:
        import dlib
        import face_recognition_models as models

        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())


def dlib_decode(data: bytes) -> np.ndarray:
    # face_recognition.load_image_file: PIL, converted to RGB, as an array
    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def dlib_stages(photo: bytes, repeats: int) -> dict[str, float]:
    models = DlibModels()
    rgb = dlib_decode(photo)
    rects = models.detector(rgb, 1)
    if not rects:
        raise SystemExit("dlib found no face in the benchmark photo")
    shape = models.shape_predictor(rgb, rects[0])
    return {
        "decode": median_ms(lambda: dlib_decode(photo), repeats),
        "detect": median_ms(lambda: models.detector(rgb, 1), repeats),
        "align": median_ms(lambda: models.shape_predictor(rgb, rects[0]), repeats),  # landmarks; chip is in embed
        "embed": median_ms(lambda: models.encoder.compute_face_descriptor(rgb, shape, 1), repeats),
    }


_dlib_models: DlibModels | None = None


def _dlib_init() -> None:
    global _dlib_models
    _dlib_models = DlibModels()


def _dlib_image(path: str) -> int:
    assert _dlib_models is not None
    rgb = dlib_decode(Path(path).read_bytes())
    rects = _dlib_models.detector(rgb, 1)
    for rect in rects:
        shape = _dlib_models.shape_predictor(rgb, rect)
        np.array(_dlib_models.encoder.compute_face_descriptor(rgb, shape, 1))
    return len(rects)


# ---- folder throughput -------------------------------------------------------------------------------------


def folder_images(folder: Path, count: int) -> list[str]:
    """``count`` images spread over the folder (every n-th of the sorted list: many different people)."""
    paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not paths:
        raise SystemExit(f"no images under {folder}")
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def _noop(_: int) -> int:
    return 0


def throughput(
    init: Callable[..., None],
    work: Callable[[str], int],
    paths: list[str],
    workers: int,
    init_args: tuple[Any, ...] = (),
) -> tuple[float, int, int]:
    with ProcessPoolExecutor(max_workers=workers, initializer=init, initargs=init_args) as pool:
        list(pool.map(_noop, range(workers * 4)))  # start every worker and load its models first
        list(pool.map(work, paths[: workers * 2]))  # and warm them up
        start = time.perf_counter()
        faces = list(pool.map(work, paths, chunksize=4))
        seconds = time.perf_counter() - start
    return len(paths) / seconds, sum(faces), sum(1 for f in faces if f == 0)


def markdown(
    args: argparse.Namespace,
    command: str,
    photo_info: str,
    stages: dict[str, dict[str, float]],
    folder: dict[str, tuple[float, int, int]],
    n_images: int,
    load_before: str,
    started: str,
) -> str:
    ft, dl = stages["FaceTrail"], stages["dlib"]
    lines = [
        "## Pipeline",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_description()}  ",
        f"Date: {started} to {now_utc()}; {load_before} at start, {load_note()} at end"
        " (other engineers share the CPU).",
        "",
        "FaceTrail: the default pipeline (YuNet detector, 5-point similarity alignment, SFace with flip"
        " averaging, one ONNX thread per process). Baseline: the dlib pipeline face_recognition uses"
        " (HOG detector, upsample 1; shape_predictor_5; ResNet descriptor, 1 jitter).",
        "",
        f"### One photo, one process ({photo_info}), median of {args.repeats} runs, ms",
        "",
        "| stage | FaceTrail | dlib (face_recognition) | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for stage in ("decode", "detect", "align", "embed"):
        lines.append(f"| {stage} | {ft[stage]:.1f} | {dl[stage]:.1f} | {dl[stage] / ft[stage]:.1f}× |")
    total_ft, total_dl = sum(ft.values()), sum(dl.values())
    lines.append(f"| **total** | **{total_ft:.1f}** | **{total_dl:.1f}** | **{total_dl / total_ft:.1f}×** |")
    lines += [
        "",
        "dlib's *align* is the 5-point shape predictor; its chip extraction happens inside the descriptor call,"
        " so it is counted in *embed*. FaceTrail's *embed* runs the model twice (the face and its mirror).",
        "",
        f"### Folder, {n_images} images from `{args.folder}`, process pool of {args.workers},"
        f" best of {args.rounds} alternating rounds",
        "",
        "| pipeline | images/s | faces found | images with no face |",
        "|---|---:|---:|---:|",
    ]
    for name, (rate, faces, empty) in folder.items():
        lines.append(f"| {name} | {rate:.1f} | {faces} | {empty} |")
    baseline = folder["dlib (face_recognition)"][0]
    ratio = folder["FaceTrail"][0] / baseline
    ratio_no_flip = folder["FaceTrail, flip_augment off (one embedder run per face)"][0] / baseline
    lines += [
        "",
        f"FaceTrail's default pipeline processes **{ratio:.1f}×** the images per second of the dlib baseline"
        f" (goal ≥ 4×); without flip averaging, {ratio_no_flip:.1f}×.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO, help="a single-face photo (~1 MP)")
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="folder of face images")
    parser.add_argument("--images", type=int, default=400, help="images taken from the folder")
    parser.add_argument("--workers", type=int, default=2, help="process pool size")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per stage")
    parser.add_argument("--rounds", type=int, default=2, help="folder runs per pipeline, alternating; best kept")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    command = "python bench/pipeline.py " + " ".join(sys.argv[1:])
    load_before = load_note()
    started = now_utc()

    photo = args.photo.read_bytes()
    with Image.open(io.BytesIO(photo)) as im:
        photo_info = f"`{args.photo.name}`, {im.width}×{im.height} = {im.width * im.height / 1e6:.2f} MP"
    stages = {"FaceTrail": facetrail_stages(photo, args.repeats), "dlib": dlib_stages(photo, args.repeats)}
    print(stages, flush=True)

    paths = folder_images(args.folder, args.images)
    contenders: dict[str, tuple[Callable[..., None], Callable[[str], int], tuple[Any, ...]]] = {
        "FaceTrail": (_facetrail_init, _facetrail_image, ()),
        "dlib (face_recognition)": (_dlib_init, _dlib_image, ()),
        "FaceTrail, flip_augment off (one embedder run per face)": (_facetrail_init, _facetrail_image, (False,)),
    }
    # rounds alternate between the pipelines so a burst of load from other jobs hits them alike; best round wins
    folder: dict[str, tuple[float, int, int]] = {}
    for _ in range(args.rounds):
        for name, (init, work, init_args) in contenders.items():
            result = throughput(init, work, paths, args.workers, init_args)
            print(name, result, flush=True)
            if name not in folder or result[0] > folder[name][0]:
                folder[name] = result
    print(folder, flush=True)
    text = markdown(args, command, photo_info, stages, folder, len(paths), load_before, started)
    print(text)
    if not args.no_write:
        write_doc_section("pipeline", text)


if __name__ == "__main__":
    main()
