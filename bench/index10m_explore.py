"""Where ApproximateIndex loses mates, and what a scanned vector costs (figures in bench/index10m_notes.md).

    nice -n 15 python bench/index10m_explore.py reach --nlists 4096,8192,16384
    nice -n 15 python bench/index10m_explore.py scan --size 2.5M --nlist 1024 --pq-m 16,32 --nprobe 1024 \
        --rerank 500,1000,2000 --implem 0,11

``reach``: on a 1M synthetic gallery (bench/common.py), k-means centroids per nlist, and for 2000 probes the rank
of the best enrolled mate's list in the probe's list order: the fraction of lists a search must probe for a given
mate recall, whatever the codes (the partition's ceiling). It does not depend on the gallery size.

``scan``: faiss IndexIVFPQFastScan directly (one shared coarse quantiser per size and nlist), one query at a time on
one thread: the scan time (faiss search for ``rerank`` candidates), the total with an exact fp32 re-rank, and
mate@10 after the re-rank. A gallery of 2.5M with nlist 1024 and nprobe 1024 scans as many codes, in lists of the
same length, as 10M with nlist 4096 at nprobe 1024, so it prices the 10M scan in a fifth of the memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SyntheticFaces
from search import parse_size


def gallery(size: int) -> np.ndarray:
    out = np.empty((size, 128), np.float32)
    for ids, vectors in SyntheticFaces().gallery_chunks(size):
        out[ids] = vectors
    return out


def centroids(vectors: np.ndarray, nlist: int, per_list: int, iterations: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    sample = vectors[np.sort(rng.choice(len(vectors), min(len(vectors), nlist * per_list), replace=False))]
    kmeans = faiss.Clustering(128, nlist)
    kmeans.niter, kmeans.seed = iterations, 1234
    kmeans.train(sample, faiss.IndexFlatIP(128))
    return faiss.vector_to_array(kmeans.centroids).reshape(nlist, 128)


def reach(args: argparse.Namespace) -> None:
    faiss.omp_set_num_threads(2)
    size = 1_000_000
    vectors = gallery(size)
    identities, probes = SyntheticFaces().probes(size, 2000)
    mates = (identities[:, None] * 2 + np.arange(2)).reshape(-1)
    for nlist in args.nlists:
        start = time.time()
        # fewer training points per list for the large nlist keeps k-means within minutes on 2 cores
        per_list, iterations = {4096: (64, 10), 8192: (32, 8)}.get(nlist, (16, 6))
        quantizer = faiss.IndexFlatIP(128)
        quantizer.add(centroids(vectors, nlist, per_list, iterations))
        _, mate_lists = quantizer.search(vectors[mates], 1)
        mate_lists = mate_lists.reshape(-1, 2)
        _, order = quantizer.search(probes, nlist)
        rank = np.empty(len(probes), np.int64)
        for i in range(len(probes)):
            position = np.empty(nlist, np.int64)
            position[order[i]] = np.arange(nlist)
            rank[i] = position[mate_lists[i]].min()
        needed = " ".join(f"{q}: {(np.quantile(rank, q) + 1) / nlist:.3f}" for q in (0.99, 0.995, 0.997, 0.998))
        print(f"nlist {nlist} ({time.time() - start:.0f} s): fraction of lists probed for mate reach {needed}")


def scan(args: argparse.Namespace) -> None:
    faiss.omp_set_num_threads(2)
    vectors = gallery(args.size)
    identities, probes = SyntheticFaces().probes(args.size, 500)
    quantizer = faiss.IndexFlatIP(128)
    quantizer.add(centroids(vectors, args.nlist, 64, 10))
    rng = np.random.default_rng(2)
    pq_sample = vectors[rng.choice(len(vectors), min(len(vectors), 131_072), replace=False)]
    for m in args.pq_m:
        ivf = faiss.IndexIVFPQFastScan(quantizer, 128, args.nlist, m, 4, faiss.METRIC_INNER_PRODUCT)
        ivf.train(pq_sample)
        faiss.omp_set_num_threads(2)
        ivf.add(vectors)
        faiss.omp_set_num_threads(1)
        for implem in args.implem:
            ivf.implem = implem
            for nprobe in args.nprobe:
                params = faiss.SearchParametersIVF(nprobe=nprobe)
                for rerank in args.rerank:
                    scanned, total = [], []
                    for i in range(100):
                        start = time.perf_counter()
                        _, found = ivf.search(probes[i : i + 1], rerank, params=params)
                        middle = time.perf_counter()
                        candidates = found[0][found[0] >= 0]
                        _ = candidates[np.argsort(-(vectors[candidates] @ probes[i]))[:10]]
                        scanned.append(middle - start)
                        total.append(time.perf_counter() - start)
                    _, found = ivf.search(probes, rerank, params=params)
                    hits = 0
                    for i in range(len(probes)):
                        candidates = found[i][found[i] >= 0]
                        best = candidates[np.argsort(-(vectors[candidates] @ probes[i]))[:10]]
                        hits += bool(np.isin(best // 2, identities[i]).any())
                    print(
                        f"{args.size:,} nlist {args.nlist} M{m} implem {implem} nprobe {nprobe} re-rank {rerank}:"
                        f" scan p50 {np.median(scanned) * 1e3:.2f} ms, with re-rank {np.median(total) * 1e3:.2f} ms,"
                        f" mate@10 {hits / len(probes):.3f} (load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
        del ivf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["reach", "scan"])
    parser.add_argument("--nlists", default="4096,8192,16384")
    parser.add_argument("--size", default="1M")
    parser.add_argument("--nlist", type=int, default=4096)
    parser.add_argument("--pq-m", default="16,32")
    parser.add_argument("--nprobe", default="768,1024")
    parser.add_argument("--rerank", default="200,1000")
    parser.add_argument("--implem", default="0,11")
    args = parser.parse_args()
    args.nlists = [int(v) for v in args.nlists.split(",")]
    args.size = parse_size(args.size)
    for name in ("pq_m", "nprobe", "rerank", "implem"):
        setattr(args, name, [int(v) for v in getattr(args, name).split(",")])
    if args.what == "reach":
        reach(args)
    else:
        scan(args)


if __name__ == "__main__":
    main()
