"""1:N identification on LFW: a gallery of one photo per person plus every one-photo person as a distractor.

Protocol (deterministic, documented in docs/accuracy.md):
* People with 2+ photos, sorted by name; every 4th of them (index % 4 == 3) is *held out*: none of their
  photos is enrolled, and all their photos with a detected face are non-mated probes (open-set).
* Every other multi-photo person enrols their first photo (by number) in which a face was found; all their
  other photos are mated probes. A mated probe with no detected face counts as a miss at every rank.
* Every one-photo person with a detected face is enrolled as a distractor.
Search is exact (all cosine scores), so the numbers measure the model, not an index approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facetrail.evaluation.embedding import EmbeddingSet
from facetrail.evaluation.metrics import cmc, fnir_at_fpir, mate_ranks

HOLDOUT_EVERY = 4
CMC_MAX_RANK = 50


@dataclass(frozen=True)
class IdentificationSplit:
    gallery: list[str]  # relative image paths, one per enrolled person
    gallery_people: list[str]
    mated_probes: list[str]
    mated_people: list[str]
    nonmated_probes: list[str]
    nonmated_no_face: int
    distractors: int
    held_out_people: int
    unenrollable_people: int


def split_identification(people: dict[str, list[str]], emb: EmbeddingSet) -> IdentificationSplit:
    found = dict(zip(emb.paths, emb.found.tolist(), strict=True))
    multi = sorted(p for p, imgs in people.items() if len(imgs) >= 2)
    held_out = {p for i, p in enumerate(multi) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1}
    gallery, gallery_people, mated, mated_people, nonmated = [], [], [], [], []
    nonmated_no_face = distractors = unenrollable = 0
    for person in sorted(people):
        images = sorted(people[person])
        if person in held_out:
            nonmated += [img for img in images if found[img]]
            nonmated_no_face += sum(not found[img] for img in images)
            continue
        enrol = next((img for img in images if found[img]), None)
        if enrol is None:
            unenrollable += 1
            continue
        gallery.append(enrol)
        gallery_people.append(person)
        if len(images) == 1:
            distractors += 1
        for img in images:
            if img != enrol:
                mated.append(img)
                mated_people.append(person)
    return IdentificationSplit(
        gallery,
        gallery_people,
        mated,
        mated_people,
        nonmated,
        nonmated_no_face,
        distractors,
        len(held_out),
        unenrollable,
    )


def identify(people: dict[str, list[str]], emb: EmbeddingSet) -> tuple[dict[str, object], np.ndarray]:
    """The report and the CMC curve (ranks 1..CMC_MAX_RANK)."""
    split = split_identification(people, emb)
    gallery = emb.subset(split.gallery).vectors
    column = {p: i for i, p in enumerate(split.gallery_people)}
    mated = emb.subset(split.mated_probes)
    mated_sim = mated.vectors @ gallery.T
    mates = np.array([column[p] for p in split.mated_people])
    mated_sim[~mated.found] = -np.inf  # no face: no candidate list at all, a miss at every rank
    ranks = mate_ranks(mated_sim, mates)
    ranks[~mated.found] = len(split.gallery) + 1
    curve = cmc(ranks, CMC_MAX_RANK)

    mated_top = mated_sim.max(axis=1)
    mated_hit = ranks == 1
    nonmated_top = (emb.subset(split.nonmated_probes).vectors @ gallery.T).max(axis=1)
    open_set = {}
    for fpir in (1e-2, 1e-3):
        fnir, threshold = fnir_at_fpir(mated_top, mated_hit, nonmated_top, fpir)
        open_set[f"{fpir:g}"] = {"fnir": round(fnir, 5), "threshold": round(threshold, 5)}
    report: dict[str, object] = {
        "model_id": emb.model_id,
        "gallery_size": len(split.gallery),
        "distractors": split.distractors,
        "mated_probes": len(split.mated_probes),
        "mated_probes_without_face": int((~mated.found).sum()),
        "nonmated_probes": len(split.nonmated_probes),
        "nonmated_probes_without_face_excluded": split.nonmated_no_face,
        "held_out_people": split.held_out_people,
        "unenrollable_people": split.unenrollable_people,
        "rank_1": round(float(curve[0]), 5),
        "rank_5": round(float(curve[4]), 5),
        "rank_20": round(float(curve[19]), 5),
        "open_set_rank1_fnir_at_fpir": open_set,
        "fpir_resolution": round(1.0 / max(len(split.nonmated_probes), 1), 6),
    }
    return report, curve
