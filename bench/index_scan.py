"""The vector index alone: one search of 20 candidates in a 100k and a 1M synthetic gallery, in-process.

    nice -n 5 python bench/index_scan.py --sizes 100000 1000000 --queries 40 --kind exact

The sizes are searched in turn, query by query, so the machine's other load hits each alike. Prints the median
and p90 per size with the load average (figures quoted in docs/benchmarks.md, "HTTP search at 1M faces").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SyntheticFaces
from facetrail.index import make_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--kind", default="exact", choices=["exact", "approximate"])
    args = parser.parse_args()
    faces = SyntheticFaces(samples_per_identity=2)
    indexes = {}
    for n in args.sizes:
        index = make_index(args.kind, faces.dim)
        for ids, vectors in faces.gallery_chunks(n, 200_000):
            index.add(ids, vectors)
        indexes[n] = index
    _, probes = faces.probes(min(args.sizes), args.queries)
    seconds: dict[int, list[float]] = {n: [] for n in indexes}
    for q in range(args.queries):
        for n, index in indexes.items():
            start = time.perf_counter()
            index.search(probes[q : q + 1], 20)
            seconds[n].append(time.perf_counter() - start)
    for n, times in seconds.items():
        ms = np.asarray(times) * 1e3
        print(
            f"{n:>9,} faces: median {np.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms"
            f" (load average {os.getloadavg()[0]:.1f})"
        )


if __name__ == "__main__":
    main()
