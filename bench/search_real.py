"""Approximate search on real face embeddings: LFW's SFace vectors hidden among millions of distractors.

    nice -n 5 python bench/search_real.py --data ../shared/data/lfw --faces 10M

Gallery: for every LFW identity with two or more images, its first image (the enrolled mate); every image of
the identities with one image (real faces with no mate); then synthetic distractors up to ``--faces``.
Probes: the other images of identities with two or more images (each has exactly one mate in the gallery).

Distractors are faces of people nobody searches for. They are drawn from a Gaussian fitted to the LFW
embeddings (their mean vector and covariance: the spread of real SFace faces, not the isotropic sphere of
bench/search.py) and normalised. The run prints, side by side, the scores of distractors against real faces and
of real different-person LFW pairs, so the match of the two distributions is checked, not assumed.

Truth is exact search (ExactIndex) over the same gallery. The approximate index is measured as shipped (spill 2)
and, as its anchor in the same run, as plain IVF (spill 1) over the same lists. Latency is one query at a time,
faiss on one thread. Embeddings come from the evaluation cache (``facetrail eval``), computed where missing.
Writes the "search-real" section of docs/benchmarks.md (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_note, machine_description, now_utc, percentile_ms, write_doc_section
from facetrail.config import get_settings
from facetrail.evaluation.embedding import embed_images
from facetrail.evaluation.lfw import open_lfw
from facetrail.index import ApproximateIndex, set_threads
from search import Row, parse_size, rss_bytes, spill_in_place, table_lines, time_queries

CHUNK = 500_000


def lfw_embeddings(data_dir: Path, workers: int) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    """(identity of each image, vectors, whether a face was found, model id) for every LFW image."""
    data = open_lfw(data_dir)
    paths = sorted(str(p.relative_to(data.images_dir)) for p in data.images_dir.glob("*/*.jpg"))
    embeddings, computed = embed_images(data.images_dir, paths, get_settings(), workers=workers)
    print(f"LFW: {len(paths)} images, {computed} embedded now", flush=True)
    rows = embeddings.index()
    order = [rows[p] for p in paths]
    identities = [p.split("/")[0] for p in paths]
    return identities, embeddings.vectors[order], embeddings.faces[order] > 0, embeddings.model_id


class Distractors:
    """Unit vectors from N(mean, cov) of the real embeddings: seeded per chunk, so any chunk can be redrawn."""

    def __init__(self, real: np.ndarray, seed: int = 0) -> None:
        self.mean = real.mean(axis=0).astype(np.float64)
        cov = np.cov(real, rowvar=False) + 1e-6 * np.eye(real.shape[1])
        self.factor = np.linalg.cholesky(cov).T.astype(np.float32)
        self.seed = seed

    def chunk(self, number: int, size: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, number))
        x = rng.standard_normal((size, len(self.mean)), np.float32) @ self.factor + self.mean.astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def score_summary(scores: np.ndarray) -> str:
    q = np.quantile(scores, [0.5, 0.99, 0.999])
    return f"mean {scores.mean():.3f}, sd {scores.std():.3f}, median {q[0]:.3f}, p99 {q[1]:.3f}, p99.9 {q[2]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="LFW folder (pairs.txt and the images)")
    parser.add_argument("--faces", default="10M", help="gallery size including the distractors, e.g. 1M, 10M")
    parser.add_argument("--nprobe", default="128,256,384,512,768,1024", help="comma-separated nprobe sweep")
    parser.add_argument("--spill", default="1,2", help="comma-separated, ascending (2 adds the second lists)")
    parser.add_argument("--probes", type=int, default=2000, help="probes for recall (latency: --latency-queries)")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="processes embedding LFW images not yet cached")
    parser.add_argument("--residual-codes", action="store_true", help="codes of the residuals to the list centroids")
    parser.add_argument("--rerank", type=int, default=None, help="candidates re-ranked exactly (default: the index's)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    command = "python bench/search_real.py " + " ".join(sys.argv[1:])
    started, load_before = now_utc(), load_note()
    size = parse_size(args.faces)
    nprobes = [int(v) for v in args.nprobe.split(",")]
    spills = sorted(int(v) for v in args.spill.split(","))

    identities, vectors, found, model_id = lfw_embeddings(args.data, args.workers)
    by_identity: dict[str, list[int]] = {}
    for row, name in enumerate(identities):
        if found[row]:
            by_identity.setdefault(name, []).append(row)
    mates, probes, probe_mates, unmated = [], [], [], []
    for rows in by_identity.values():
        if len(rows) == 1:
            unmated.append(rows[0])
            continue
        mates.append(rows[0])
        for other in rows[1:]:
            probes.append(other)
            probe_mates.append(len(mates) - 1)  # gallery id of the mate
    real = np.concatenate([vectors[mates], vectors[unmated]]).astype(np.float32)
    rng = np.random.default_rng(5)
    pick = rng.choice(len(probes), size=min(args.probes, len(probes)), replace=False)
    probe_vectors = np.ascontiguousarray(vectors[np.array(probes)[pick]], dtype=np.float32)
    probe_truth = np.array(probe_mates)[pick]

    # the distractors' scores against real faces, beside real different-person scores
    distractors = Distractors(vectors[found])
    sample = distractors.chunk(10**6, 2000)
    distractor_scores = (sample @ vectors[found][rng.choice(int(found.sum()), 2000, replace=False)].T).ravel()
    real_rows = rng.choice(len(real), size=4000, replace=False)
    a, b = real[real_rows[:2000]], real[real_rows[2000:]]
    real_impostor = np.sum(a * b, axis=1)  # gallery faces are of different people (one face per identity)
    print("distractor vs real face:", score_summary(distractor_scores), flush=True)
    print("real different-person:  ", score_summary(real_impostor), flush=True)

    set_threads(2)
    rss_before = rss_bytes()
    start = time.perf_counter()
    extra = {} if args.rerank is None else {"rerank": args.rerank}
    index = ApproximateIndex(real.shape[1], spill=spills[0], by_residual=args.residual_codes, **extra)
    index.add(np.arange(len(real)), real)
    for number, at in enumerate(range(len(real), size, CHUNK)):
        n = min(CHUNK, size - at)
        index.add(np.arange(at, at + n), distractors.chunk(number, n))
    build_s = time.perf_counter() - start
    rss = rss_bytes() - rss_before
    print(f"built {size:,} in {build_s:.0f} s, RSS +{rss / 1e9:.2f} GB", flush=True)

    _, exact_ids = index.exact.search(probe_vectors, args.k)
    set_threads(1)
    rows: list[Row] = []

    def quality(ids: np.ndarray) -> tuple[float, float, float]:
        best = float(np.mean([exact_ids[i, 0] in ids[i] for i in range(len(ids))]))
        return best, float(np.mean(ids[:, 0] == probe_truth)), float(np.mean((ids == probe_truth[:, None]).any(1)))

    n_exact = 30
    seconds, _, cpu = time_queries(lambda q: index.exact.search(q, args.k)[1][0], probe_vectors, n_exact)
    rows.append(
        Row(
            size,
            "ExactIndex (faiss flat IP, 1 thread)",
            percentile_ms(seconds, 50),
            percentile_ms(seconds, 99),
            percentile_ms(cpu, 50),
            index.exact.memory_bytes() / size,
            *quality(exact_ids),
            f"{n_exact} queries timed; recall over all {len(probe_vectors)} probes",
        )
    )
    print(rows[-1], flush=True)
    for spill in spills:
        if spill != index.spill:
            spill_s = spill_in_place(index)
            build_s += spill_s
            print(f"spilled into second lists in {spill_s:.0f} s", flush=True)
        for nprobe in nprobes:
            seconds, _, cpu = time_queries(
                lambda q, n=nprobe: index.search(q, args.k, nprobe=n)[1][0], probe_vectors, args.latency_queries
            )
            _, ids = index.search(probe_vectors, args.k, nprobe=nprobe)
            label = "spill 2 (SOAR)" if index.spill == 2 else "spill 1 (plain IVF)"
            label += ", residual codes" if index.by_residual else ""
            label += f", re-rank {index.rerank}"
            rows.append(
                Row(
                    size,
                    f"ApproximateIndex IVF{index.nlist} pq-fastscan, {label}, nprobe {nprobe}",
                    percentile_ms(seconds, 50),
                    percentile_ms(seconds, 99),
                    percentile_ms(cpu, 50),
                    index.memory_bytes() / size,
                    *quality(ids),
                    f"{args.latency_queries} queries timed; load {os.getloadavg()[0]:.1f}",
                )
            )
            print(rows[-1], flush=True)

    lines = [
        "## Search on real embeddings",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_description()}  ",
        f"Date: {started} to {now_utc()}; {load_before} at start, {load_note()} at end.",
        "",
        f"Embeddings: `{model_id}` on LFW ({len(identities):,} images, {int(found.sum()):,} with a face). Gallery:"
        f" {len(mates):,} enrolled mates (first image of each identity with two or more), {len(unmated):,} real"
        f" faces without a mate, {size - len(real):,} synthetic distractors (N(mean, cov) of the LFW embeddings,"
        f" normalised). Probes: {len(probe_vectors):,} other images of the mated identities, each with exactly"
        f" one mate in the gallery; k = {args.k}. Index built in {build_s:.0f} s (both list sets), process RSS"
        f" +{rss / 1e9:.1f} GB.",
        "",
        "Do the distractors score like real strangers? Cosine of a distractor with a real face: "
        f"{score_summary(distractor_scores)}; of two real gallery faces (different people): "
        f"{score_summary(real_impostor)}.",
        "",
        "Columns as in the Search section: *best found* = exact search's rank-1 in the method's top-k;"
        " *mate@1* / *mate@k* = the probe's one enrolled mate at rank 1 / in the top-k (exact search's own"
        " mate@k is the ceiling: some LFW mates are not the nearest face even to an exact search).",
        "",
        *table_lines(rows),
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_doc_section("search-real", text)


if __name__ == "__main__":
    main()
