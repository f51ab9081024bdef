"""Shared helpers for the benchmarks: synthetic face-like embeddings, machine description, doc sections."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class SyntheticFaces:
    """Identities with a random unit centre; a sample is ``normalise(centre + noise)``.

    With noise of squared norm r² a sample has cosine 1/sqrt(1+r²) to its centre, so two samples of one
    identity have cosine 1/sqrt((1+ra²)(1+rb²)). r² is drawn per sample from [0.25, 1.0], which gives
    same-identity cosines between 0.5 and 0.8 (like SFace genuine pairs); random centres in 128-d have cosine
    0 ± 1/sqrt(128) ≈ 0 ± 0.09 (like SFace impostor pairs).
    """

    dim: int = 128
    samples_per_identity: int = 2
    seed: int = 0
    min_noise_sq: float = 0.25
    max_noise_sq: float = 1.0

    identities_per_block: int = 65_536

    def _centre_block(self, block: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, 0, block))
        return normalise_rows(rng.standard_normal((self.identities_per_block, self.dim), np.float32))

    def centres(self, identities: np.ndarray) -> np.ndarray:
        """Centres depend on the identity number alone (blocks of identities share one seeded generator),
        so probes can be drawn later without keeping the centres."""
        out = np.empty((len(identities), self.dim), np.float32)
        blocks = identities // self.identities_per_block
        for block in np.unique(blocks):
            rows = np.flatnonzero(blocks == block)
            out[rows] = self._centre_block(int(block))[identities[rows] % self.identities_per_block]
        return out

    def samples(self, identities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        centres = self.centres(identities)
        noise_sq = rng.uniform(self.min_noise_sq, self.max_noise_sq, size=(len(identities), 1)).astype(np.float32)
        noise = rng.standard_normal(centres.shape, np.float32) * np.sqrt(noise_sq / self.dim)
        return normalise_rows(centres + noise)

    def gallery_chunks(self, n: int, chunk: int = 500_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) in chunks; face id ``i`` belongs to identity ``i // samples_per_identity``."""
        for start in range(0, n, chunk):
            ids = np.arange(start, min(n, start + chunk), dtype=np.int64)
            rng = np.random.default_rng((self.seed, 1, start))
            yield ids, self.samples(ids // self.samples_per_identity, rng)

    def probes(self, n_gallery: int, count: int, seed: int = 99) -> tuple[np.ndarray, np.ndarray]:
        """Fresh samples of enrolled identities: (identities, vectors)."""
        rng = np.random.default_rng((self.seed, 2, seed))
        n_identities = n_gallery // self.samples_per_identity
        identities = rng.choice(n_identities, size=count, replace=False).astype(np.int64)
        return identities, self.samples(identities, rng)


def machine_description() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return f"{os.cpu_count()} cores (nproc), {model}, {mem_gb:.0f} GB RAM, Python {platform.python_version()}"


def load_note() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_doc_section(name: str, body: str, path: Path = DOC_PATH) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->``, or append the section."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nWritten by the scripts in bench/.\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1e3, q))
