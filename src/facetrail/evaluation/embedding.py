"""Embedding a list of images with the production pipeline, in a process pool, cached per model.

Face choice for benchmark images: LFW photos are centred on the labelled person but often show others
too. We take the *largest face nearest the centre*: among faces at least half as large (box area) as the
largest one, the one whose box centre is closest to the image centre. A bystander who is merely large
therefore cannot win over a similar-sized face in the middle, and a small face in the middle (a poster,
a badge) cannot win over the subject.

The cache (one ``.npz`` per embedder model id and detector id) maps relative image paths to vectors, so a
rerun, or another command over the same images, embeds nothing twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrail.config import Settings
from facetrail.errors import FaceTrailError
from facetrail.faces.detect import detection_id
from facetrail.faces.types import DetectedFace

CHUNK = 48  # images per pool task: large enough to amortise the round trip, small for a smooth progress bar
SAVE_EVERY = 960  # images between cache saves, so an interrupted run keeps most of its work
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "facetrail" / "eval"


def choose_eval_face(faces: Sequence[DetectedFace], width: int, height: int) -> int | None:
    """Index of the largest face nearest the centre (see the module docstring), or None if there is none."""
    if not faces:
        return None
    largest = max(f.area for f in faces)
    cx, cy = width / 2.0, height / 2.0
    best, best_distance = None, float("inf")
    for i, face in enumerate(faces):
        if face.area < 0.5 * largest:
            continue
        x, y, w, h = face.box
        distance = float(np.hypot(x + w / 2.0 - cx, y + h / 2.0 - cy))
        if distance < best_distance:
            best, best_distance = i, distance
    return best


@dataclass
class EmbeddingSet:
    """Vectors for images by relative path; ``faces[i] == 0`` means no face was found (vector is zeros)."""

    model_id: str
    detector_id: str
    paths: list[str]
    vectors: np.ndarray  # (n, d) float32, L2-normalised rows (zeros where no face)
    faces: np.ndarray  # (n,) int32: number of faces detected in the image

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}

    def subset(self, paths: Sequence[str]) -> EmbeddingSet:
        where = self.index()
        rows = [where[p] for p in paths]
        return EmbeddingSet(self.model_id, self.detector_id, list(paths), self.vectors[rows], self.faces[rows])

    @property
    def found(self) -> np.ndarray:
        return self.faces > 0


def cache_file(cache_dir: Path, model_id: str, detector_id: str, images_dir: Path, arithmetic: str = "fp32") -> Path:
    # The images folder is part of the key: the same relative names under another folder are other images.
    # The arithmetic too: bf16 vectors are close to fp32 ones, not equal (fp32 keeps the older key).
    runtime = "" if arithmetic == "fp32" else f"|{arithmetic}"
    key = hashlib.sha256(f"{model_id}|{detector_id}|{images_dir.resolve()}{runtime}".encode()).hexdigest()[:12]
    safe = model_id.replace("@", "_").replace("/", "_")
    return cache_dir / f"{safe}-{key}.npz"


def load_cache(path: Path) -> EmbeddingSet | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return EmbeddingSet(
            str(data["model_id"]),
            str(data["detector_id"]),
            [str(p) for p in data["paths"]],
            data["vectors"].astype(np.float32),
            data["faces"].astype(np.int32),
        )


def save_cache(path: Path, emb: EmbeddingSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        model_id=emb.model_id,
        detector_id=emb.detector_id,
        paths=np.array(emb.paths),
        vectors=emb.vectors,
        faces=emb.faces,
    )
    os.replace(tmp, path)


# --- worker side: each process builds its own pipeline once -------------------------------------------

_worker_pipeline = None


def _init_worker(settings_json: str) -> None:
    global _worker_pipeline
    from facetrail.faces.pipeline import FacePipeline

    _worker_pipeline = FacePipeline(Settings.model_validate_json(settings_json))


def _embed_chunk(images_dir: str, paths: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    pipeline = _worker_pipeline
    assert pipeline is not None
    dim = pipeline.embedder.dim
    vectors = np.zeros((len(paths), dim), np.float32)
    counts = np.zeros(len(paths), np.int32)
    for i, rel in enumerate(paths):
        try:
            image = pipeline.decode_path(Path(images_dir) / rel)
        except FaceTrailError:
            continue  # an unreadable image counts as "no face found"; it is reported, never dropped
        faces = pipeline.detect(image)
        chosen = choose_eval_face(faces, image.width, image.height)
        counts[i] = len(faces)
        if chosen is not None:
            vectors[i] = pipeline.embedder.embed(image.pixels, [faces[chosen]])[0]
    return paths, vectors, counts


def model_ids(settings: Settings) -> tuple[str, str, int, str]:
    """(embedder model id, detector id, dim, arithmetic: 'fp32' or 'bf16') without embedding anything."""
    from facetrail.faces.pipeline import FacePipeline

    pipeline = FacePipeline(settings)
    arithmetic = str(getattr(pipeline.embedder, "precision", "fp32"))
    return (
        pipeline.model_id,
        detection_id(pipeline.detector.model_id, settings.detection),
        pipeline.embedder.dim,
        arithmetic,
    )


def embed_images(
    images_dir: Path,
    paths: Sequence[str],
    settings: Settings,
    *,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[EmbeddingSet, int]:
    """Embeddings for ``paths`` (relative to ``images_dir``) and how many had to be computed now."""
    model_id, detector_id, dim, arithmetic = model_ids(settings)
    path = cache_file(cache_dir, model_id, detector_id, images_dir, arithmetic)
    cached = load_cache(path) or EmbeddingSet(
        model_id, detector_id, [], np.zeros((0, dim), np.float32), np.zeros(0, np.int32)
    )
    known = cached.index()
    todo = [p for p in dict.fromkeys(paths) if p not in known]
    all_paths, all_vectors, all_faces = list(cached.paths), [cached.vectors], [cached.faces]
    done = len(paths) - len(todo)
    if progress:
        progress(done, len(paths))
    if todo:
        chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
        since_save = 0
        with ProcessPoolExecutor(
            max_workers=max(1, workers), initializer=_init_worker, initargs=(settings.model_dump_json(),)
        ) as pool:
            for got_paths, vectors, faces in pool.map(_embed_chunk, [str(images_dir)] * len(chunks), chunks):
                all_paths += got_paths
                all_vectors.append(vectors)
                all_faces.append(faces)
                done += len(got_paths)
                since_save += len(got_paths)
                if progress:
                    progress(done, len(paths))
                if since_save >= SAVE_EVERY:
                    save_cache(
                        path,
                        EmbeddingSet(
                            model_id, detector_id, all_paths, np.concatenate(all_vectors), np.concatenate(all_faces)
                        ),
                    )
                    since_save = 0
        save_cache(
            path, EmbeddingSet(model_id, detector_id, all_paths, np.concatenate(all_vectors), np.concatenate(all_faces))
        )
    full = EmbeddingSet(model_id, detector_id, all_paths, np.concatenate(all_vectors), np.concatenate(all_faces))
    return full.subset(list(dict.fromkeys(paths))), len(todo)
