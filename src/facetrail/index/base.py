"""The interface every vector index implements, and the pieces they share (locking, checksum, file format)."""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import numpy as np

# File layout: MAGIC, u32 header length, JSON header, then the faiss index blobs named in the header.
FILE_MAGIC = b"FTIDX001"
_CHECKSUM_CHUNK = 262_144


@runtime_checkable
class VectorIndex(Protocol):
    """Inner-product search over L2-normalised float32 vectors keyed by int64 ids (the face ids)."""

    kind: str
    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add new ids; an id already present is refused (remove it first to replace its vector)."""
        ...

    def remove(self, ids: np.ndarray) -> int:
        """Delete these ids and their vectors (absent ids are ignored); returns how many were removed."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (len(queries), min(k, ntotal)), best first."""
        ...

    def __len__(self) -> int: ...

    @property
    def ntotal(self) -> int: ...

    def checksum(self) -> str:
        """Order-independent digest of the (id, vector) set; equals ``vector_set_checksum`` of the same set."""
        ...

    def save(self, path: str | Path) -> None: ...


def vector_set_checksum(ids: np.ndarray, vectors: np.ndarray) -> str:
    """SHA-256 over (id, float32 vector bytes) in ascending id order, so insertion order does not matter.

    The database computes the same digest from its rows to prove the index holds exactly what it should.
    """
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors")
    order = np.argsort(ids, kind="stable")
    digest = hashlib.sha256()
    digest.update(struct.pack("<qq", len(ids), vectors.shape[1] if vectors.ndim == 2 else 0))
    for start in range(0, len(order), _CHECKSUM_CHUNK):
        rows = order[start : start + _CHECKSUM_CHUNK]
        # id then vector per row, little-endian, so a reader in another language can reproduce it
        records = np.empty(len(rows), dtype=[("id", "<i8"), ("vector", "<f4", (vectors.shape[1],))])
        records["id"] = ids[rows]
        records["vector"] = vectors[rows]
        digest.update(records.tobytes())
    return digest.hexdigest()


def check_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {np.shape(vectors)}")
    if not np.all(np.isfinite(array)):
        raise ValueError("vectors contain NaN or infinity")
    return array


def check_ids(ids: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    if np.any(array < 0):
        raise ValueError("ids must be non-negative (-1 means 'no result' in search output)")
    return array


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through ``write(file)`` into a temp file beside ``path``, fsync, then rename over ``path``."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class ReadWriteLock:
    """Many concurrent searches, or one mutation: faiss indexes are safe to read in parallel, not to change."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            # waiting writers go first, so a stream of searches cannot starve an enrolment
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
