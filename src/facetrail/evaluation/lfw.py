"""Reading the LFW benchmark files: pairs.txt (View 2), pairsDevTrain.txt (View 1) and the image tree."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from facetrail.errors import BadInputError


@dataclass(frozen=True)
class Pair:
    a: str  # image path relative to the images root, e.g. "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
    b: str
    same: bool
    fold: int


@dataclass(frozen=True)
class LfwData:
    root: Path  # the folder holding pairs.txt
    images_dir: Path  # the folder holding one sub-folder per person

    def image(self, relative: str) -> Path:
        return self.images_dir / relative


def image_name(person: str, number: int) -> str:
    return f"{person}/{person}_{number:04d}.jpg"


def open_lfw(root: Path) -> LfwData:
    """Accepts the folder with pairs.txt whose images live in ``images_deepfunneled/``, ``lfw/`` or beside it."""
    if not (root / "pairs.txt").is_file():
        raise BadInputError(f"{root} has no pairs.txt: give the LFW folder (the one holding pairs.txt)")
    for name in ("images_deepfunneled", "lfw-deepfunneled", "lfw_funneled", "lfw", "images"):
        if (root / name).is_dir():
            return LfwData(root, root / name)
    return LfwData(root, root)


def read_pairs(path: Path) -> list[Pair]:
    """pairs.txt: a header ``folds n`` then per fold n same-person lines and n different-person lines.

    pairsDevTrain.txt has a single count header and is read as one fold of n + n pairs.
    """
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    header = [int(v) for v in lines[0]]
    folds, per_fold = (header[0], header[1]) if len(header) == 2 else (1, header[0])
    body = lines[1:]
    if len(body) != folds * per_fold * 2:
        raise BadInputError(f"{path}: expected {folds * per_fold * 2} pairs, found {len(body)}")
    pairs = []
    for i, parts in enumerate(body):
        fold = i // (2 * per_fold)
        if len(parts) == 3:
            pairs.append(Pair(image_name(parts[0], int(parts[1])), image_name(parts[0], int(parts[2])), True, fold))
        elif len(parts) == 4:
            pairs.append(Pair(image_name(parts[0], int(parts[1])), image_name(parts[2], int(parts[3])), False, fold))
        else:
            raise BadInputError(f"{path}: line {i + 2} is not a pair: {' '.join(parts)}")
    return pairs


def pair_images(pairs: list[Pair]) -> list[str]:
    return sorted({p.a for p in pairs} | {p.b for p in pairs})


def all_images(data: LfwData) -> dict[str, list[str]]:
    """Every person's images (relative paths, sorted), from the image tree."""
    people: dict[str, list[str]] = defaultdict(list)
    for path in sorted(data.images_dir.glob("*/*.jpg")):
        people[path.parent.name].append(f"{path.parent.name}/{path.name}")
    return dict(people)
