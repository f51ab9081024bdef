"""In-process vector indexes behind one small interface (``VectorIndex``).

``make_index("exact" | "approximate", dim, **params)`` builds one; ``load_index(path)`` reads one saved with
``index.save(path)``. The database is the source of truth: compare ``index.checksum()`` with
``vector_set_checksum(ids, vectors)`` of its rows, and rebuild the index when they differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facetrail.index.base import VectorIndex, vector_set_checksum
from facetrail.index.faiss_index import (
    ApproximateIndex,
    ExactIndex,
    read_index_header,
    set_threads,
    use_training_device,
)

INDEX_KINDS = ("exact", "approximate")


def make_index(kind: str, dim: int, **params: Any) -> ExactIndex | ApproximateIndex:
    """``exact``: ``threads``. ``approximate``: ``nlist``, ``nprobe``, ``rerank``, ``codec``, ``pq_subquantizers``,
    ``quantizer``, ``scan_implem``, ``spill``, ``spill_lambda``, ``min_train_size``, ``train_size``,
    ``train_iterations``, ``threads``, ``seed`` (see ``ApproximateIndex``)."""
    if kind == "exact":
        return ExactIndex(dim, **params)
    if kind == "approximate":
        return ApproximateIndex(dim, **params)
    raise ValueError(f"unknown index kind {kind!r} (choose one of {', '.join(INDEX_KINDS)})")


def load_index(path: str | Path, *, threads: int = 1) -> ExactIndex | ApproximateIndex:
    with open(path, "rb") as fh:
        header = read_index_header(fh)
        kind = header.get("kind")
        index: ExactIndex | ApproximateIndex
        if kind == "exact":
            index = ExactIndex.from_stream(header, fh, threads=threads)
        elif kind == "approximate":
            index = ApproximateIndex.from_stream(header, fh, threads=threads)
        else:
            raise ValueError(f"index file {path} has unknown kind {kind!r}")
        if fh.read(1):
            raise ValueError(f"index file {path} has trailing bytes (corrupt or truncated write)")
    if index.ntotal != int(header["ntotal"]):
        raise ValueError(f"index file {path} holds {index.ntotal} vectors but its header says {header['ntotal']}")
    return index


__all__ = [
    "INDEX_KINDS",
    "ApproximateIndex",
    "ExactIndex",
    "VectorIndex",
    "load_index",
    "make_index",
    "set_threads",
    "use_training_device",
    "vector_set_checksum",
]
