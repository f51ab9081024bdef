"""The degraded-probe protocol: probes degraded by a ``DegradeSpec``, galleries and second images clean.

Guarantees:
* Each probe is decoded, its face found on the *clean* image (the face geometry the face-relative steps need,
  and the ground truth of "which face"), degraded with ``degrade.degrade`` seeded per image
  (``degrade.image_seed``), then run through the production pipeline exactly as a submitted probe would be:
  the detector (with the settings' small-face logic), the largest-face-nearest-centre choice of
  ``embedding.choose_eval_face``, each requested embedder, and the quality measures of ``faces.quality``.
* A probe whose degraded image yields no face keeps a zero vector and counts as "no face" (rejected pairs:
  an error when same-person); it is counted and reported, never dropped.
* Results are cached per (spec, seed, model, detector settings, images folder) as ``.npz`` files beside the
  clean caches, so every level runs once; a rerun embeds nothing. The key names settings, not code: after a
  change to the pipeline's code, measure into a fresh ``--cache-dir``.
* Several embedders run on the same degraded image in one pass (SFace and dlib share decode, degrade and
  detection), so the fusion is assembled from the same faces exactly as ``runner.embed_for_model`` does.
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
from facetrail.evaluation.degrade import DegradeSpec, degrade, image_seed, parse_spec
from facetrail.evaluation.embedding import DEFAULT_CACHE_DIR, EmbeddingSet, choose_eval_face
from facetrail.evaluation.lfw import Pair
from facetrail.faces.types import DetectedFace

CHUNK = 24
QUALITY_FIELDS = ("eye_distance_px", "sharpness", "brightness", "roll_deg")


@dataclass
class DegradedRun:
    """Per model: the probe embeddings; shared: the quality measures of each degraded probe (NaN: no face)."""

    spec: str
    seed: int
    embeddings: dict[str, EmbeddingSet]  # "sface" / "dlib" -> set
    quality: dict[str, np.ndarray]  # QUALITY_FIELDS -> (n,) float64
    computed: int


def _settings_for(model: str, base: Settings) -> Settings:
    embedding = base.embedding.model_copy(update={"embedder": model})
    return base.model_copy(update={"embedding": embedding})


def _runtime_key(ids: tuple[str, str, int, str]) -> str:
    """The model id, plus the arithmetic where it is not fp32 (fp32 keeps the older cache key)."""
    return ids[0] if ids[3] == "fp32" else f"{ids[0]}|{ids[3]}"


def _cache_path(cache_dir: Path, model_id: str, detector_key: str, images_dir: Path, spec: str, seed: int) -> Path:
    key = hashlib.sha256(f"{model_id}|{detector_key}|{images_dir.resolve()}|{spec}|{seed}".encode()).hexdigest()[:12]
    safe = model_id.split("@")[0].replace("/", "_")
    return cache_dir / "degraded" / f"{safe}-{key}.npz"


def _load(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


# --- worker side ------------------------------------------------------------------------------------------

_worker: dict[str, object] = {}


def _init_worker(settings_json: str, models: list[str]) -> None:
    from facetrail.faces.pipeline import FacePipeline

    base = Settings.model_validate_json(settings_json)
    _worker["pipeline"] = FacePipeline(_settings_for(models[0], base))
    _worker["embedders"] = [FacePipeline(_settings_for(m, base)).embedder for m in models]


def probe_measures(
    pipeline: object, embedders: Sequence[object], pixels: np.ndarray, rel: str, spec: DegradeSpec, seed: int
) -> tuple[list[np.ndarray | None], int, list[float]]:
    """Degrade one clean image and run it through the pipeline: (vector per embedder, faces, quality)."""
    from facetrail.faces.align import align_face
    from facetrail.faces.detect import detect_faces
    from facetrail.faces.pipeline import FacePipeline
    from facetrail.faces.quality import assess_quality

    assert isinstance(pipeline, FacePipeline)

    def detect(image: np.ndarray) -> list[DetectedFace]:
        return detect_faces(image, pipeline.detector, pipeline.settings.detection)

    nothing: list[np.ndarray | None] = [None] * len(embedders)
    no_quality = [float("nan")] * len(QUALITY_FIELDS)
    landmarks = None
    if spec.needs_face:
        clean_faces = detect(pixels)
        chosen = choose_eval_face(clean_faces, pixels.shape[1], pixels.shape[0])
        if chosen is None:
            return nothing, 0, no_quality
        landmarks = clean_faces[chosen].landmarks
    probe = degrade(pixels, spec, landmarks=landmarks, seed=image_seed(spec, rel, seed))
    faces = detect(probe)
    chosen = choose_eval_face(faces, probe.shape[1], probe.shape[0])
    if chosen is None:
        return nothing, len(faces), no_quality
    face = faces[chosen]
    vectors: list[np.ndarray | None] = [e.embed(probe, [face])[0] for e in embedders]  # type: ignore[attr-defined]
    quality = assess_quality(face, align_face(probe, face.landmarks, 112), pipeline.settings.quality)
    measures = [quality.eye_distance_px, quality.sharpness, quality.brightness, quality.roll_deg]
    return vectors, len(faces), measures


def _run_chunk(
    images_dir: str, paths: list[str], spec_text: str, seed: int
) -> tuple[list[str], list[np.ndarray], np.ndarray, np.ndarray]:
    pipeline, embedders = _worker["pipeline"], _worker["embedders"]
    spec = parse_spec(spec_text)
    dims = [e.dim for e in embedders]  # type: ignore[attr-defined]
    vectors = [np.zeros((len(paths), d), np.float32) for d in dims]
    counts = np.zeros(len(paths), np.int32)
    quality = np.full((len(paths), len(QUALITY_FIELDS)), np.nan)
    for i, rel in enumerate(paths):
        try:
            image = pipeline.decode_path(Path(images_dir) / rel)  # type: ignore[attr-defined]
        except FaceTrailError:
            continue
        got, counts[i], quality[i] = probe_measures(pipeline, embedders, image.pixels, rel, spec, seed)  # type: ignore[arg-type]
        for m, vector in enumerate(got):
            if vector is not None:
                vectors[m][i] = vector
    return paths, vectors, counts, quality


def degraded_embeddings(
    images_dir: Path,
    paths: Sequence[str],
    spec: DegradeSpec,
    models: Sequence[str],
    settings: Settings,
    *,
    seed: int = 0,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> DegradedRun:
    """Embeddings of the degraded ``paths`` for each model in ``models`` ('sface', 'dlib', 'onnx:...')."""
    from facetrail.evaluation.embedding import model_ids

    ids = {m: model_ids(_settings_for(m, settings)) for m in models}
    detector_key = f"{ids[models[0]][1]}|{settings.detection.model_dump_json()}"
    files = {m: _cache_path(cache_dir, _runtime_key(ids[m]), detector_key, images_dir, spec.text, seed) for m in models}
    cached = {m: _load(files[m]) for m in models}
    wanted = list(dict.fromkeys(paths))
    known = [set() if c is None else {str(p) for p in c["paths"]} for c in cached.values()]
    todo = [p for p in wanted if not all(p in k for k in known)]
    rows: dict[str, dict[str, tuple[np.ndarray, int, np.ndarray]]] = {m: {} for m in models}
    for m, c in cached.items():
        if c is not None:
            for i, p in enumerate(c["paths"]):
                rows[m][str(p)] = (c["vectors"][i], int(c["faces"][i]), c["quality"][i])
    done = len(wanted) - len(todo)
    if progress:
        progress(done, len(wanted))
    if todo:
        chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
        with ProcessPoolExecutor(
            max_workers=max(1, workers),
            initializer=_init_worker,
            initargs=(settings.model_dump_json(), list(models)),
        ) as pool:
            n = len(chunks)
            for got_paths, vectors, counts, quality in pool.map(
                _run_chunk, [str(images_dir)] * n, chunks, [spec.text] * n, [seed] * n
            ):
                for m_index, m in enumerate(models):
                    for i, p in enumerate(got_paths):
                        rows[m][p] = (vectors[m_index][i], int(counts[i]), quality[i])
                done += len(got_paths)
                if progress:
                    progress(done, len(wanted))
        for m in models:
            keys = list(rows[m])
            _save(
                files[m],
                {
                    "paths": np.array(keys),
                    "vectors": np.stack([rows[m][k][0] for k in keys]).astype(np.float32),
                    "faces": np.array([rows[m][k][1] for k in keys], np.int32),
                    "quality": np.stack([rows[m][k][2] for k in keys]).astype(np.float64),
                },
            )
    embeddings = {}
    for m in models:
        embeddings[m] = EmbeddingSet(
            ids[m][0],
            ids[m][1],
            wanted,
            np.stack([rows[m][p][0] for p in wanted]).astype(np.float32),
            np.array([rows[m][p][1] for p in wanted], np.int32),
        )
    measured = np.stack([rows[models[0]][p][2] for p in wanted]) if wanted else np.zeros((0, len(QUALITY_FIELDS)))
    by_field = {name: measured[:, i] for i, name in enumerate(QUALITY_FIELDS)}
    return DegradedRun(spec.text, seed, embeddings, by_field, len(todo))


def fuse_sets(sface: EmbeddingSet, dlib: EmbeddingSet, weight: float | None = None) -> EmbeddingSet:
    """The fusion of two sets over the same paths (zero where either half found no face)."""
    from facetrail.faces.embed_dlib import FUSION_WEIGHT, fuse, fusion_model_id

    w = FUSION_WEIGHT if weight is None else weight
    found = sface.found & dlib.found
    vectors = fuse(sface.vectors, dlib.vectors, w)
    vectors[~found] = 0.0
    return EmbeddingSet(
        fusion_model_id(sface.model_id, dlib.model_id, w),
        sface.detector_id,
        list(sface.paths),
        vectors,
        np.where(found, sface.faces, 0).astype(np.int32),
    )


def subset_pairs(pairs: Sequence[Pair], per_fold: int | None) -> list[Pair]:
    """The first ``per_fold`` same-person and first ``per_fold`` different-person pairs of every fold."""
    if per_fold is None:
        return list(pairs)
    out: list[Pair] = []
    taken: dict[tuple[int, bool], int] = {}
    for p in pairs:
        key = (p.fold, p.same)
        if taken.get(key, 0) < per_fold:
            out.append(p)
            taken[key] = taken.get(key, 0) + 1
    return out


def probe_pair_scores(
    probes: EmbeddingSet, clean: EmbeddingSet, pairs: Sequence[Pair]
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, no_face) with the first image of each pair the degraded probe, the second clean."""
    from facetrail.evaluation.verification import NO_FACE_SCORE

    pa, pb = probes.index(), clean.index()
    a = np.array([pa[p.a] for p in pairs], dtype=np.int64)
    b = np.array([pb[p.b] for p in pairs], dtype=np.int64)
    scores = np.einsum("ij,ij->i", probes.vectors[a], clean.vectors[b]).astype(np.float64)
    no_face = ~(probes.found[a] & clean.found[b])
    scores[no_face] = NO_FACE_SCORE
    return scores, no_face


def verification_summary(
    probes: EmbeddingSet, clean: EmbeddingSet, pairs: Sequence[Pair], spec: str, quality: dict[str, np.ndarray]
) -> tuple[dict[str, object], np.ndarray, np.ndarray]:
    """LFW-style k-fold accuracy (each fold's threshold chosen on the other folds *under the same degradation*)."""
    from facetrail.evaluation.metrics import kfold_accuracy, roc_auc, tar_at_far

    scores, no_face = probe_pair_scores(probes, clean, pairs)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    result = kfold_accuracy(scores, same, folds)
    where = probes.index()
    eye = np.array([quality["eye_distance_px"][where[p.a]] for p in pairs])
    summary: dict[str, object] = {
        "model_id": probes.model_id,
        "degrade": spec,
        "pairs": len(pairs),
        "folds": len(result.accuracies),
        "accuracy_mean": round(result.mean, 5),
        "accuracy_std": round(result.std, 5),
        "fold_thresholds": [round(t, 5) for t in result.thresholds],
        "roc_auc": round(roc_auc(scores, same), 6),
        "tar_at_far": {f"{far:g}": round(tar_at_far(scores, same, far), 5) for far in (1e-2, 1e-3)},
        "no_face_pairs": int(no_face.sum()),
        "no_face_same_pairs": int((no_face & same).sum()),
        "probe_eye_distance_median": None if np.isnan(eye).all() else round(float(np.nanmedian(eye)), 2),
    }
    return summary, scores, same


# --- the sweep: every level, every model, one table ----------------------------------------------------------

EYE_LEVELS = ("eye=48", "eye=32", "eye=24", "eye=16", "eye=12")
OTHER_LEVELS = (
    "jpeg=20",
    "blur=3",
    "motion=9",
    "gamma=2.5+noise=10",
    "occlude=lower",
    "occlude=eyes",
    "rotate=+-30",
)
DEFAULT_LEVELS = ("clean", *EYE_LEVELS, *OTHER_LEVELS)


@dataclass
class SweepLevel:
    spec: str
    summaries: dict[str, dict[str, object]]  # model label -> verification summary
    scores: dict[str, np.ndarray]  # model label -> pair scores
    same: np.ndarray
    probe_quality: dict[str, np.ndarray]  # QUALITY_FIELDS -> per pair (the probe's measures)
    computed: int


def model_label(model_id: str) -> str:
    return model_id.split("@")[0]


def sweep_level(
    images_dir: Path,
    pairs: Sequence[Pair],
    spec: DegradeSpec,
    clean: dict[str, EmbeddingSet],
    settings: Settings,
    *,
    seed: int = 0,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> SweepLevel:
    """One degradation level for every model in ``clean`` ('sface', 'dlib'; 'fusion' when both are there)."""
    models = [m for m in clean if m != "fusion"]
    probes = [p.a for p in pairs]
    run = degraded_embeddings(
        images_dir, probes, spec, models, settings, seed=seed, cache_dir=cache_dir, workers=workers, progress=progress
    )
    sets = dict(run.embeddings)
    gallery = dict(clean)
    if "sface" in sets and "dlib" in sets:
        sets["fusion"] = fuse_sets(sets["sface"], sets["dlib"])
        gallery["fusion"] = fuse_sets(clean["sface"], clean["dlib"])
    summaries, scores = {}, {}
    same = np.array([p.same for p in pairs])
    for key, probe_set in sets.items():
        summary, s, same = verification_summary(probe_set, gallery[key], pairs, spec.text, run.quality)
        label = model_label(probe_set.model_id)
        summaries[label], scores[label] = summary, s
    where = {p: i for i, p in enumerate(list(dict.fromkeys(probes)))}
    rows = np.array([where[p] for p in probes], dtype=np.int64)
    quality = {k: v[rows] for k, v in run.quality.items()}
    return SweepLevel(spec.text, summaries, scores, same, quality, run.computed)


def save_sweep(levels: Sequence[SweepLevel], pairs: Sequence[Pair], path: Path) -> None:
    """Every level's pair scores and probe quality measures, for plots and the quality table."""
    arrays: dict[str, np.ndarray] = {
        "specs": np.array([lv.spec for lv in levels]),
        "same": np.array([p.same for p in pairs]),
        "folds": np.array([p.fold for p in pairs]),
    }
    for i, lv in enumerate(levels):
        for label, s in lv.scores.items():
            arrays[f"scores|{i}|{label}"] = s
        for name, values in lv.probe_quality.items():
            arrays[f"quality|{i}|{name}"] = values
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def load_sweep(
    path: Path,
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """(specs, same, folds, scores[spec][model label], quality[spec][field]) from ``save_sweep``'s file."""
    with np.load(path, allow_pickle=False) as data:
        specs = [str(s) for s in data["specs"]]
        scores: dict[str, dict[str, np.ndarray]] = {s: {} for s in specs}
        quality: dict[str, dict[str, np.ndarray]] = {s: {} for s in specs}
        for key in data.files:
            kind, _, rest = key.partition("|")
            if kind in ("scores", "quality"):
                index, _, name = rest.partition("|")
                target = scores if kind == "scores" else quality
                target[specs[int(index)]][name] = data[key]
        return specs, data["same"].astype(bool), data["folds"], scores, quality


def sweep_markdown(levels: Sequence[SweepLevel], default_label: str, baseline_label: str) -> str:
    """The docs table: accuracy ± std per level and model, and whether the default beats the baseline."""
    labels = list(dict.fromkeys(label for lv in levels for label in lv.summaries))
    head = "| degradation (`--degrade`) | probe eye px (median) | " + " | ".join(labels) + " | default − dlib |"
    lines = [head, "|" + "---|" * (len(labels) + 3)]
    for lv in levels:
        cells = []
        for label in labels:
            s = lv.summaries.get(label)
            if s is None:
                cells.append("–")
                continue
            acc, std = float(s["accuracy_mean"]), float(s["accuracy_std"])  # type: ignore[arg-type]
            none = int(s["no_face_pairs"])  # type: ignore[call-overload]
            cell = f"{acc * 100:.2f}% ± {std * 100:.1f}"
            if none:
                cell += f" ({none} no-face)"
            cells.append(f"**{cell}**" if label == default_label else cell)
        eye = next(iter(lv.summaries.values()))["probe_eye_distance_median"]
        d, b = lv.summaries.get(default_label), lv.summaries.get(baseline_label)
        delta = "–"
        if d and b:
            gap = (float(d["accuracy_mean"]) - float(b["accuracy_mean"])) * 100  # type: ignore[arg-type]
            delta = f"{gap:+.2f}"
        lines.append(f"| `{lv.spec}` | {eye if eye is not None else '–'} | " + " | ".join(cells) + f" | {delta} |")
    return "\n".join(lines) + "\n"


def identification_probes(
    people: dict[str, list[str]], clean: EmbeddingSet, every: int = 1
) -> tuple[list[str], list[str]]:
    """(mated, non-mated) probe images of the LFW 1:N split, every ``every``-th of each (in split order)."""
    from facetrail.evaluation.identification import split_identification

    split = split_identification(people, clean)
    return split.mated_probes[::every], split.nonmated_probes[::every]


def identify_degraded(
    people: dict[str, list[str]], clean: EmbeddingSet, probes: EmbeddingSet, spec: str, every: int = 1
) -> tuple[dict[str, object], np.ndarray]:
    """1:N with degraded probes against the clean gallery of ``identification.split_identification``.

    Same rules as ``identification.identify``: a mated probe with no face misses at every rank; a non-mated
    probe with no face cannot raise a false alarm and is excluded from FPIR (counted).
    """
    from facetrail.evaluation.identification import CMC_MAX_RANK, split_identification
    from facetrail.evaluation.metrics import cmc, fnir_at_fpir, mate_ranks

    split = split_identification(people, clean)
    gallery = clean.subset(split.gallery).vectors
    column = {p: i for i, p in enumerate(split.gallery_people)}
    mated_paths = split.mated_probes[::every]
    mated_people = split.mated_people[::every]
    nonmated_paths = split.nonmated_probes[::every]
    mated = probes.subset(mated_paths)
    sims = mated.vectors @ gallery.T
    sims[~mated.found] = -np.inf
    ranks = mate_ranks(sims, np.array([column[p] for p in mated_people], dtype=np.int64))
    ranks[~mated.found] = len(split.gallery) + 1
    curve = cmc(ranks, CMC_MAX_RANK)
    nonmated = probes.subset(nonmated_paths)
    nonmated_top = (nonmated.vectors[nonmated.found] @ gallery.T).max(axis=1)
    open_set: dict[str, object] = {}
    for fpir in (1e-2,) if len(nonmated_top) else ():  # no non-mated search: no open-set figure
        fnir, threshold = fnir_at_fpir(sims.max(axis=1), ranks == 1, nonmated_top, fpir)
        open_set[f"{fpir:g}"] = {"fnir": round(fnir, 5), "threshold": round(threshold, 5)}
    report: dict[str, object] = {
        "model_id": probes.model_id,
        "degrade": spec,
        "probes_every": every,
        "gallery_size": len(split.gallery),
        "mated_probes": len(mated_paths),
        "mated_probes_without_face": int((~mated.found).sum()),
        "nonmated_probes": int(nonmated.found.sum()),
        "nonmated_probes_without_face_excluded": int((~nonmated.found).sum()),
        "rank_1": round(float(curve[0]), 5),
        "rank_5": round(float(curve[4]), 5),
        "rank_20": round(float(curve[19]), 5),
        "open_set_rank1_fnir_at_fpir": open_set,
    }
    return report, curve
