"""Search latency, memory and mate recall of the vector indexes on synthetic face-like embeddings.

    nice -n 5 python bench/search.py --sizes 100k,1M,10M

For each gallery size: the memory-bandwidth floor (one pass over the fp32 vectors), brute-force numpy
(``gallery @ q`` + argpartition, what face_recognition users do), ExactIndex, and ApproximateIndex over a sweep
of ``nprobe``. Latency is one query at a time (batch of 1), faiss on one thread. Results go to the "Search"
section of docs/benchmarks.md (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    SyntheticFaces,
    load_note,
    machine_description,
    now_utc,
    percentile_ms,
    write_doc_section,
)
from facetrail.index import ApproximateIndex, ExactIndex, set_threads
from facetrail.index.faiss_index import CentroidTable, append_to_lists, soar_second_lists


@dataclass
class Row:
    size: int
    method: str
    p50_ms: float
    p99_ms: float
    cpu_p50_ms: float | None  # per-query CPU time of this process (time.process_time): robust to other load
    bytes_per_face: float | None
    best_found: float | None  # exact rank-1 within the method's top-k
    mate_rank1: float | None  # an enrolled sample of the probe's identity at rank 1
    mate_topk: float | None  # ... anywhere in the top-k
    note: str = ""


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def time_queries(search: object, probes: np.ndarray, count: int) -> tuple[list[float], list[np.ndarray], list[float]]:
    """Wall seconds, results and CPU seconds (this process) of ``count`` single queries."""
    seconds, ids, cpu = [], [], []
    for i in range(count):
        cpu_start = time.process_time()
        start = time.perf_counter()
        found = search(probes[i : i + 1])  # type: ignore[operator]
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        ids.append(found)
    return seconds, ids, cpu


def numpy_brute_force(gallery: np.ndarray, gallery_ids: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = gallery @ query[0]
    top = np.argpartition(-scores, k)[:k]
    return gallery_ids[top[np.argsort(-scores[top])]]


def bandwidth_floor(vectors: np.ndarray, repeats: int = 5) -> float:
    """Best time to read every vector once: any exact search must at least do this.

    An OR-reduction over the bytes as 64-bit integers: one streaming pass, SIMD, almost no work per byte
    (measured faster than a float sum or max, so closer to the memory bandwidth).
    """
    words = vectors.reshape(-1).view(np.uint64)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.bitwise_or.reduce(words)
        best = min(best, time.perf_counter() - start)
    return best


def quality(found: np.ndarray, truth_best: np.ndarray, probe_identities: np.ndarray, per_identity: int):
    """(exact rank-1 found in top-k, mate at rank 1, mate in top-k) over all probes."""
    best_found = float(np.mean([truth_best[i] in found[i] for i in range(len(found))]))
    identities = np.where(found >= 0, found // per_identity, -1)
    mate_rank1 = float(np.mean(identities[:, 0] == probe_identities))
    mate_topk = float(np.mean((identities == probe_identities[:, None]).any(axis=1)))
    return best_found, mate_rank1, mate_topk


def build(faces: SyntheticFaces, size: int, **params: object) -> tuple[ApproximateIndex, float, int]:
    """The index, its build time (s) and the process RSS growth while building (bytes)."""
    gc.collect()
    rss_before = rss_bytes()
    start = time.perf_counter()
    index = ApproximateIndex(faces.dim, **params)  # type: ignore[arg-type]
    for ids, vectors in faces.gallery_chunks(size):
        index.add(ids, vectors)
        del vectors
    gc.collect()
    build_s = time.perf_counter() - start
    rss = rss_bytes() - rss_before
    print(
        f"[{size:,}] {params} built in {build_s:.0f} s (trained: {index.trained}), RSS +{rss / 1e9:.2f} GB", flush=True
    )
    return index, build_s, rss


def measure_exact(
    args: argparse.Namespace, exact: ExactIndex, probes: np.ndarray, probe_identities: np.ndarray, per_identity: int
) -> tuple[np.ndarray, list[Row]]:
    """Ground truth (exact rank-1 per probe) and the rows for the floor, numpy and ExactIndex."""
    k = args.k
    rows: list[Row] = []
    gallery_ids, gallery = exact.stored()  # zero-copy views of the index's own fp32 storage
    size = len(gallery_ids)

    # ground truth: exact top-k of every probe, batched on both cores (not timed)
    set_threads(2)
    _, truth = exact.search(probes, k)
    set_threads(1)
    truth_best = truth[:, 0]
    ceiling = quality(truth, truth_best, probe_identities, per_identity)
    print(f"[{size:,}] exact search over all {len(probes)} probes: mate@1 {ceiling[1]:.3f}, mate@k {ceiling[2]:.3f}")

    floor_s = bandwidth_floor(gallery)
    gbps = gallery.nbytes / floor_s / 1e9
    rows.append(
        Row(
            size,
            "memory-bandwidth floor (one pass over the vectors)",
            floor_s * 1e3,
            floor_s * 1e3,
            None,
            None,
            None,
            None,
            None,
            f"{gbps:.1f} GB/s",
        )
    )

    n_slow = max(10, min(args.latency_queries, int(args.latency_queries * 1_000_000 / size)))
    seconds, found, cpu = time_queries(lambda q: numpy_brute_force(gallery, gallery_ids, q, k), probes, n_slow)
    rows.append(
        Row(
            size,
            "numpy brute force (gallery @ q, argpartition)",
            percentile_ms(seconds, 50),
            percentile_ms(seconds, 99),
            percentile_ms(cpu, 50),
            gallery.itemsize * exact.dim,
            *quality(np.stack(found), truth_best[:n_slow], probe_identities[:n_slow], per_identity),
            f"{n_slow} queries",
        )
    )

    seconds, found, cpu = time_queries(lambda q: exact.search(q, k)[1][0], probes, n_slow)
    rows.append(
        Row(
            size,
            "ExactIndex (faiss flat IP, 1 thread)",
            percentile_ms(seconds, 50),
            percentile_ms(seconds, 99),
            percentile_ms(cpu, 50),
            exact.memory_bytes() / size,
            *quality(np.stack(found), truth_best[:n_slow], probe_identities[:n_slow], per_identity),
            f"{n_slow} queries",
        )
    )

    return truth_best, rows


def ivf_reach(
    index: ApproximateIndex, probes: np.ndarray, probe_identities: np.ndarray, per_identity: int, nprobe: int
) -> float:
    """Share of probes with an enrolled mate in one of the ``nprobe`` lists searched: the IVF partition's
    ceiling on mate recall, whatever the codes and the re-rank (the rest of the loss is the codes'). With
    spilling a mate is in two lists: its nearest and SOAR's second."""
    ivf = index._ivf
    _, probed = ivf.quantizer.search(probes, nprobe)
    mate_ids = (probe_identities[:, None] * per_identity + np.arange(per_identity)).reshape(-1)
    mate_vectors = index.exact.reconstruct(mate_ids)
    _, mate_lists = ivf.quantizer.search(mate_vectors, 1)
    if index.spill == 2:
        second = soar_second_lists(ivf, mate_vectors, index.spill_lambda)[:, None]
        mate_lists = np.concatenate([mate_lists, second], axis=1)
    mate_lists = mate_lists.reshape(len(probes), -1)
    return float(np.mean([np.isin(mate_lists[i], probed[i]).any() for i in range(len(probes))]))


def spill_in_place(index: ApproximateIndex) -> float:
    """Turn a trained spill-1 index into the spill-2 index of the same lists (what building with ``spill=2``
    gives): each face's copy into SOAR's second list. Seconds taken."""
    start = time.perf_counter()
    ids, vectors = index.exact.stored()
    table = CentroidTable(index._ivf)
    for at in range(0, len(ids), 65_536):
        chunk = np.ascontiguousarray(vectors[at : at + 65_536])
        chunk_ids = np.ascontiguousarray(ids[at : at + 65_536])
        second = soar_second_lists(index._ivf, chunk, index.spill_lambda, table)
        append_to_lists(index._ivf, second, chunk_ids, chunk)
    index.spill = 2
    return time.perf_counter() - start


def run_size(args: argparse.Namespace, size: int, faces: SyntheticFaces) -> list[Row]:
    k = args.k
    rows: list[Row] = []
    nlist = args.nlist or (1024 if size < 500_000 else 4096)
    per_identity = faces.samples_per_identity
    params: dict[str, object] = {"nlist": nlist, "rerank": args.rerank[0], "train_iterations": args.train_iterations}
    if args.pq_m:
        params["pq_subquantizers"] = args.pq_m
    if args.quantizer != "flat":
        params["quantizer"] = args.quantizer
    if args.scan_implem is not None:
        params["scan_implem"] = args.scan_implem
    params["spill"] = args.spill[0]
    params["by_residual"] = args.residual_codes
    index, build_s, rss = build(faces, size, codec=args.codecs[0], **params)

    probe_identities, probes = faces.probes(size, args.probes)
    if args.skip_exact:
        set_threads(2)
        truth = index.exact.search(probes, k)[1]
        set_threads(1)
        truth_best = truth[:, 0]
        ceiling = quality(truth, truth_best, probe_identities, per_identity)
        print(
            f"[{size:,}] exact search over all {len(probes)} probes: mate@1 {ceiling[1]:.3f}, mate@k {ceiling[2]:.3f}"
        )
    else:
        truth_best, exact_rows = measure_exact(args, index.exact, probes, probe_identities, per_identity)
        rows += exact_rows

    for codec_number, codec in enumerate(args.codecs):
        if codec_number:
            del index
            index, build_s, rss = build(faces, size, codec=codec, **params)
        codec_label = codec if not args.pq_m or codec != "pq-fastscan" else f"{codec} M{args.pq_m}"
        if args.quantizer != "flat":
            codec_label += f" ({args.quantizer} quantiser)"
        if args.scan_implem is not None:
            codec_label += f" (implem {args.scan_implem})"
        if args.residual_codes:
            codec_label += " residual codes"
        for spill in args.spill if index.trained else args.spill[:1]:
            if spill != index.spill:
                spill_s = spill_in_place(index)
                print(f"[{size:,}] spilled into second lists in {spill_s:.0f} s", flush=True)
                build_s += spill_s
            rows += measure_approximate(args, index, size, nlist, codec_label, probes, probe_identities, truth_best)
        rows.append(
            Row(
                size,
                f"(process RSS growth while building the {codec_label} index)",
                float("nan"),
                float("nan"),
                None,
                rss / size,
                None,
                None,
                None,
                f"build {build_s:.0f} s",
            )
        )
    return rows


def measure_approximate(
    args: argparse.Namespace,
    index: ApproximateIndex,
    size: int,
    nlist: int,
    codec_label: str,
    probes: np.ndarray,
    probe_identities: np.ndarray,
    truth_best: np.ndarray,
) -> list[Row]:
    k, per_identity, rows = args.k, args.per_identity, []
    spill_label = ", spill 2 (SOAR)" if index.spill == 2 else ""
    for nprobe in args.nprobe if index.trained else args.nprobe[:1]:
        reach = ivf_reach(index, probes, probe_identities, per_identity, nprobe) if index.trained else 1.0
        for rerank in args.rerank if index.trained else args.rerank[:1]:
            seconds, _, cpu = time_queries(
                lambda q, n=nprobe, r=rerank, ix=index: ix.search(q, k, nprobe=n, rerank=r)[1][0],
                probes,
                args.latency_queries,
            )
            _, approx_ids = index.search(probes, k, nprobe=nprobe, rerank=rerank)
            label = (
                f"ApproximateIndex IVF{nlist} {codec_label}{spill_label} + re-rank {rerank}, nprobe {nprobe}"
                if index.trained
                else "ApproximateIndex (below training threshold: exact)"
            )
            rows.append(
                Row(
                    size,
                    label,
                    percentile_ms(seconds, 50),
                    percentile_ms(seconds, 99),
                    percentile_ms(cpu, 50),
                    index.memory_bytes() / size,
                    *quality(approx_ids, truth_best, probe_identities, per_identity),
                    f"{args.latency_queries} queries; mate in probed lists {reach:.3f}",
                )
            )
            print(rows[-1], os.getloadavg()[0], flush=True)
    return rows


def fmt(value: float | None, spec: str) -> str:
    if value is None or value != value:
        return "–"
    return format(value, spec)


def markdown(rows: list[Row], args: argparse.Namespace, command: str, load_before: str, started: str) -> str:
    lines = [
        "## Search",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_description()}  ",
        f"Date: {started} to {now_utc()}; {load_before} at start, {load_note()} at end"
        " (other engineers share the CPU).",
        "",
        f"Synthetic 128-d embeddings with identity structure: {args.per_identity} enrolled samples per identity,"
        " sample = normalise(centre + noise), same-identity cosine 0.5–0.8, different-identity 0 ± 0.09"
        f" (bench/common.py). {args.probes} probes, each a fresh sample of an enrolled identity; k = {args.k}."
        " Latency: one query at a time; faiss on one thread; numpy with its default BLAS threads.",
        "",
        "Columns: *p50 CPU ms* = median CPU time of this process per query (time.process_time; the load-robust"
        " figure when other jobs share the cores); *best found* = exact search's rank-1 appears in the method's"
        " top-k (recall against exact);"
        " *mate@1* / *mate@k* = an enrolled sample of the probe's identity at rank 1 / in the top-k."
        " *mate in probed lists* (note) = an enrolled mate lies in one of the nprobe IVF lists searched, the"
        " partition's ceiling on mate recall. Memory is bytes per face of the index structures (fp32 vectors"
        " 512 B, ids, id maps, IVF codes).",
        "",
        *table_lines(rows),
    ]
    return "\n".join(lines)


def table_lines(rows: list[Row]) -> list[str]:
    """The markdown table of ``rows`` (header included), shared by bench/search_real.py."""
    lines = [
        "| faces | method | p50 ms | p99 ms | p50 CPU ms | B/face | best found | mate@1 | mate@k | note |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.size:,} | {r.method} | {fmt(r.p50_ms, '.2f')} | {fmt(r.p99_ms, '.2f')} |"
            f" {fmt(r.cpu_p50_ms, '.2f')} | {fmt(r.bytes_per_face, '.0f')} | {fmt(r.best_found, '.3f')} |"
            f" {fmt(r.mate_rank1, '.3f')} |"
            f" {fmt(r.mate_topk, '.3f')} | {r.note} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100k,1M", help="comma-separated gallery sizes, e.g. 100k,1M,10M")
    parser.add_argument("--probes", type=int, default=1000, help="probes for recall")
    parser.add_argument("--latency-queries", type=int, default=200, help="single queries timed (fewer for slow)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nlist", type=int, default=0, help="IVF lists (default: 1024 below 500k, else 4096)")
    parser.add_argument("--nprobe", default="64,256,1024", help="comma-separated nprobe values to sweep")
    parser.add_argument("--codecs", default="pq-fastscan", help="comma-separated: pq-fastscan, sq8")
    parser.add_argument("--rerank", default="100", help="comma-separated IVF candidates re-ranked exactly (swept)")
    parser.add_argument("--pq-m", type=int, default=0, help="pq-fastscan sub-quantisers (default: dim/4)")
    parser.add_argument("--quantizer", default="flat", help="coarse quantiser: flat or hnsw")
    parser.add_argument("--scan-implem", type=int, default=None, help="faiss fast-scan implem (default: the index's)")
    parser.add_argument(
        "--spill",
        default="2",
        help="comma-separated, ascending: 1 and/or 2 (2 adds SOAR's second lists to the same index)",
    )
    parser.add_argument("--residual-codes", action="store_true", help="codes of the residuals to the list centroids")
    parser.add_argument("--skip-exact", action="store_true", help="no floor/numpy/ExactIndex rows (exploration)")
    parser.add_argument("--train-iterations", type=int, default=10)
    parser.add_argument("--per-identity", type=int, default=2, help="enrolled samples per identity")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    args.nprobe = [int(v) for v in args.nprobe.split(",")]
    args.codecs = args.codecs.split(",")
    args.rerank = [int(v) for v in args.rerank.split(",")]
    args.spill = sorted(int(v) for v in args.spill.split(","))
    command = "python bench/search.py " + " ".join(sys.argv[1:])
    load_before = load_note()
    started = now_utc()
    set_threads(1)
    faces = SyntheticFaces(samples_per_identity=args.per_identity)
    rows: list[Row] = []
    for size in (parse_size(s) for s in args.sizes.split(",")):
        rows += run_size(args, size, faces)
    text = markdown(rows, args, command, load_before, started)
    print(text)
    if not args.no_write:
        write_doc_section("search", text)


if __name__ == "__main__":
    main()
