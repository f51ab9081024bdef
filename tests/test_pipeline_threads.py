"""The server analyses photos from several worker threads at once: results must equal single-threaded ones."""

from __future__ import annotations

import threading

import numpy as np

from face_fixtures import FIXTURES
from facetrail.faces.pipeline import FacePipeline


def test_concurrent_analysis_matches_sequential() -> None:
    pipeline = FacePipeline()
    images = [pipeline.decode_path(FIXTURES / "face_recognition" / name) for name in ("two_people.jpg", "obama.jpg")]
    expected = [[f.embedding.vector for f in pipeline.analyze(img)] for img in images]  # type: ignore[union-attr]
    errors: list[str] = []

    def worker(offset: int) -> None:
        for round_ in range(4):
            i = (offset + round_) % len(images)
            got = [f.embedding.vector for f in pipeline.analyze(images[i])]  # type: ignore[union-attr]
            if len(got) != len(expected[i]) or not all(
                np.allclose(a, b, atol=1e-5) for a, b in zip(got, expected[i], strict=True)
            ):
                errors.append(f"thread {offset} round {round_}: results differ")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({id(d) for d in _detectors(pipeline, 3)}) == 3  # one detector per thread
    runner = getattr(pipeline.embedder, "_runner", None)
    if hasattr(runner, "slots"):  # OpenVINO: compiled models are pooled, never more than one per core
        assert 1 <= runner.slots <= runner.max_slots


def test_openvino_models_stay_bounded_under_many_threads() -> None:
    """However many server threads embed, the OpenVINO runner compiles at most one model slot per core
    (each slot ~80 MB), and every thread still gets the single-threaded vectors."""
    from facetrail.faces.embed import sface_embedder

    embedder = sface_embedder(backend="openvino")
    runner = embedder._runner
    crops = [np.full((112, 112, 3), v, np.uint8) for v in (40, 120, 200)]
    expected = embedder.embed_crops(crops)
    errors: list[str] = []
    start = threading.Barrier(12)

    def worker() -> None:
        start.wait()
        for _ in range(3):
            if not np.allclose(embedder.embed_crops(crops), expected, atol=1e-5):
                errors.append("vectors differ")

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert 1 <= runner.slots <= runner.max_slots


def _detectors(pipeline: FacePipeline, n: int) -> list[object]:
    found: list[object] = []
    lock = threading.Lock()

    def grab() -> None:
        with lock:
            found.append(pipeline.detector)

    threads = [threading.Thread(target=grab) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return found
