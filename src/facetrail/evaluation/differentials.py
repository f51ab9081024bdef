"""Demographic differentials (``facetrail eval identify --groups FILE.csv``), as RCW 43.386 and NIST FRVT Part 3 ask.

Guarantees:
* The agency supplies the labels: a CSV manifest with a header, an ``image`` column (path relative to the
  images folder), an optional ``subject`` column (default: the image's folder, as in LFW) and any number of
  attribute columns (``sex``, ``age_band``, ``skin_tone``, ...). FaceTrail never infers a group from a face.
  A blank cell leaves that image out of that attribute only. Bad manifests (no ``image`` column, no attribute
  column, an image named twice, an image the data set does not hold) are refused with the line number.
* Per attribute and group: the mated searches whose probe carries the label, their rank-1 identification
  rate and their FNIR at the operational threshold (a miss unless the mate is the top candidate *and*
  scores above the threshold, the same rule as ``identification.identify``'s open-set FNIR).
* Per pair of groups: the false-match rate of impostor pairs (images of different subjects, clean, every
  unordered pair once) at the operational threshold, with its pair count, within a group (diagonal) and
  across groups (off the diagonal), and pooled within / across.
* The operational threshold is the shipped calibration's score at the verification target FMR unless one
  is given; the report names it and where it came from. Counts are reported beside every rate, because a
  rate over a handful of pairs says little.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetrail.errors import BadInputError
from facetrail.evaluation.embedding import EmbeddingSet
from facetrail.evaluation.identification import split_identification
from facetrail.evaluation.metrics import mate_ranks


@dataclass(frozen=True)
class GroupManifest:
    attributes: list[str]
    labels: dict[str, dict[str, str]]  # attribute -> image -> group label
    subjects: dict[str, str]  # image -> subject


def read_manifest(path: Path, known_images: Sequence[str] | None = None) -> GroupManifest:
    """The manifest at ``path`` (see the module docstring); BadInputError on anything malformed."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BadInputError(f"cannot read the groups manifest {path}: {exc.strerror}") from None
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "image" not in fields:
        raise BadInputError(f"{path}: the groups manifest needs a header with an 'image' column")
    attributes = [f for f in fields if f not in ("image", "subject") and f]
    if not attributes:
        raise BadInputError(f"{path}: no group column (e.g. image,sex,age_band)")
    known = set(known_images) if known_images is not None else None
    labels: dict[str, dict[str, str]] = {a: {} for a in attributes}
    subjects: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        image = row.get("image", "")
        if not image:
            raise BadInputError(f"{path}: line {line} has no image")
        if image in subjects:
            raise BadInputError(f"{path}: line {line}: image {image!r} is listed twice")
        if known is not None and image not in known:
            raise BadInputError(f"{path}: line {line}: image {image!r} is not in the data set")
        subjects[image] = row.get("subject") or image.split("/")[0]
        for a in attributes:
            if row.get(a):
                labels[a][image] = row[a]
    if not subjects:
        raise BadInputError(f"{path}: the groups manifest lists no image")
    return GroupManifest(attributes, labels, subjects)


def impostor_fmr_matrix(
    vectors: np.ndarray, subjects: np.ndarray, groups: np.ndarray, names: list[str], threshold: float, block: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """(false matches, impostor pairs) per pair of groups, symmetric, each unordered image pair counted once."""
    n, g = vectors.shape[0], len(names)
    onehot = np.zeros((n, g), np.float64)
    onehot[np.arange(n), groups] = 1.0
    accepted = np.zeros((g, g))
    total = np.zeros((g, g))
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = vectors[start:stop] @ vectors[start:].T
        rows = np.arange(stop - start)[:, None]
        cols = np.arange(n - start)[None, :]
        impostor = (cols > rows) & (subjects[start:stop, None] != subjects[None, start:])
        hit = impostor & (sims > threshold)
        a, b = onehot[start:stop], onehot[start:]
        total += a.T @ impostor.astype(np.float64) @ b
        accepted += a.T @ hit.astype(np.float64) @ b
    # (g, h) and (h, g) hold the two orientations of the same unordered pairs: fold them together
    accepted = accepted + accepted.T - np.diag(np.diag(accepted))
    total = total + total.T - np.diag(np.diag(total))
    return accepted, total


def group_differentials(
    people: dict[str, list[str]],
    emb: EmbeddingSet,
    manifest: GroupManifest,
    threshold: float,
    threshold_source: str,
) -> dict[str, object]:
    """The report (see the module docstring) for every attribute of the manifest."""
    split = split_identification(people, emb)
    gallery = emb.subset(split.gallery).vectors
    column = {p: i for i, p in enumerate(split.gallery_people)}
    mated = emb.subset(split.mated_probes)
    sims = mated.vectors @ gallery.T
    sims[~mated.found] = -np.inf
    mates = np.array([column[p] for p in split.mated_people], dtype=np.int64)
    ranks = mate_ranks(sims, mates) if len(mates) else np.zeros(0, np.int64)
    ranks[~mated.found] = len(split.gallery) + 1
    top = sims.max(axis=1) if len(mates) else np.zeros(0)
    hit = (ranks == 1) & (top > threshold)
    probe_row = {p: i for i, p in enumerate(split.mated_probes)}

    where = emb.index()
    report: dict[str, object] = {
        "model_id": emb.model_id,
        "threshold": round(threshold, 5),
        "threshold_source": threshold_source,
        "fnir_rule": "a mated search misses unless its mate is the top candidate and scores above the threshold",
        "fmr_rule": "impostor pairs: every unordered pair of clean images of different subjects, once",
        "attributes": {},
    }
    for attribute in manifest.attributes:
        labels = manifest.labels[attribute]
        names = sorted(set(labels.values()))
        per_group: dict[str, dict[str, object]] = {}
        for name in names:
            rows = [probe_row[img] for img, lab in labels.items() if lab == name and img in probe_row]
            n = len(rows)
            per_group[name] = {
                "images": sum(1 for lab in labels.values() if lab == name),
                "mated_searches": n,
                "rank_1": round(float((ranks[rows] == 1).mean()), 5) if n else None,
                "fnir": round(float(1.0 - hit[rows].mean()), 5) if n else None,
            }
        images = [img for img in labels if img in where and emb.found[where[img]]]
        vectors = emb.vectors[[where[i] for i in images]] if images else np.zeros((0, emb.vectors.shape[1]))
        subject_ids = {s: k for k, s in enumerate(sorted({manifest.subjects[i] for i in images}))}
        subjects = np.array([subject_ids[manifest.subjects[i]] for i in images], dtype=np.int64)
        group_index = np.array([names.index(labels[i]) for i in images], dtype=np.int64)
        accepted, total = impostor_fmr_matrix(vectors, subjects, group_index, names, threshold)
        with np.errstate(invalid="ignore", divide="ignore"):
            fmr = np.where(total > 0, accepted / total, np.nan)
        within_acc, within_tot = float(np.trace(accepted)), float(np.trace(total))
        across_acc = float(accepted.sum() - np.trace(accepted)) / 2
        across_tot = float(total.sum() - np.trace(total)) / 2
        for i, name in enumerate(names):
            per_group[name]["fmr_within"] = None if total[i, i] == 0 else float(fmr[i, i])
            per_group[name]["impostor_pairs_within"] = int(total[i, i])
        report["attributes"][attribute] = {  # type: ignore[index]
            "groups": per_group,
            "fmr_matrix": {
                "groups": names,
                "fmr": [[None if np.isnan(v) else float(v) for v in row] for row in fmr],
                "impostor_pairs": total.astype(np.int64).tolist(),
                "false_matches": accepted.astype(np.int64).tolist(),
            },
            "fmr_within_groups": within_acc / within_tot if within_tot else None,
            "fmr_across_groups": across_acc / across_tot if across_tot else None,
            "impostor_pairs_within": int(within_tot),
            "impostor_pairs_across": int(across_tot),
        }
    return report


def plot_differentials(report: dict[str, object], out: Path, label: str) -> list[Path]:
    """Per attribute: a bar chart of FNIR by group and the group × group impostor FMR matrix."""
    from facetrail.evaluation.plots import plot_group_bars, plot_group_matrix

    written = []
    for attribute, data in report["attributes"].items():  # type: ignore[attr-defined]
        fnir = {g: float(v["fnir"]) for g, v in data["groups"].items() if v["fnir"] is not None}
        bars = out / f"groups-fnir-{attribute}-{label}.png"
        plot_group_bars(fnir, bars, f"FNIR at the operational threshold by {attribute}", "FNIR")
        matrix = np.array(
            [[np.nan if v is None else v for v in row] for row in data["fmr_matrix"]["fmr"]], dtype=np.float64
        )
        heat = out / f"groups-fmr-{attribute}-{label}.png"
        plot_group_matrix(data["fmr_matrix"]["groups"], matrix, heat, f"impostor FMR by {attribute}")
        written += [bars, heat]
    return written
