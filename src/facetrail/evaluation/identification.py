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

from collections.abc import Callable, Sequence
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


# --- per-subject candidate lists (issue 11): several enrolled photos per subject ---------------------------

MULTI_PHOTO_MIN = 3  # people with at least this many photos are the mated (or held-out) subjects
NONMATED_PER_PERSON = 3  # non-mated probes per held-out person: their first photos with a face


@dataclass(frozen=True)
class SubjectSplit:
    """Gallery of whole subjects: every enrolled person with all of their photos (less one probe)."""

    gallery: list[str]  # relative image paths, every enrolled face
    gallery_people: list[str]  # the person of each enrolled face
    mated_probes: list[str]  # one per multi-photo person: their last photo (by number) with a face
    mated_people: list[str]
    nonmated_probes: list[str]
    held_out_people: int
    distractor_people: int


def split_subjects(people: dict[str, list[str]], emb: EmbeddingSet) -> SubjectSplit:
    """Deterministic: people with ≥ 3 photos sorted by name; every 4th is held out (their first 3 photos with a
    face are non-mated probes: capped, so that one held-out person filed under two names in LFW, such as
    Abdullah Gul, 19 photos, several showing Recep Tayyip Erdogan, cannot make most of the false alarms);
    every other one enrols all but their last photo with a face, which is their mated probe. People with 1 or
    2 photos enrol every photo with a face, as distractors."""
    found = dict(zip(emb.paths, emb.found.tolist(), strict=True))
    multi = sorted(p for p, imgs in people.items() if len(imgs) >= MULTI_PHOTO_MIN)
    held_out = {p for i, p in enumerate(multi) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1}
    gallery, gallery_people, mated, mated_people, nonmated = [], [], [], [], []
    distractors = 0
    for person in sorted(people):
        images = [img for img in sorted(people[person]) if found[img]]
        if person in held_out:
            nonmated += images[:NONMATED_PER_PERSON]
            continue
        if len(people[person]) >= MULTI_PHOTO_MIN and len(images) >= 2:
            mated.append(images[-1])
            mated_people.append(person)
            images = images[:-1]
        elif images:
            distractors += 1
        gallery += images
        gallery_people += [person] * len(images)
    return SubjectSplit(gallery, gallery_people, mated, mated_people, nonmated, len(held_out), distractors)


def distinct_in_top(similarity: np.ndarray, groups: np.ndarray, length: int) -> np.ndarray:
    """Per probe, how many different people the first ``length`` entries of its face list show."""
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :length]
    return np.array([len(set(groups[row].tolist())) for row in top])


def _list_report(mated_sim: np.ndarray, ranks: np.ndarray, nonmated_sim: np.ndarray, entries: int) -> dict[str, object]:
    curve = cmc(ranks, CMC_MAX_RANK)
    mated_top = mated_sim.max(axis=1)
    mated_hit = ranks == 1
    nonmated_top = nonmated_sim.max(axis=1)
    open_set = {}
    for fpir in (1e-2, 1e-3):
        fnir, threshold = fnir_at_fpir(mated_top, mated_hit, nonmated_top, fpir)
        open_set[f"{fpir:g}"] = {"fnir": round(fnir, 5), "threshold": round(threshold, 5)}
    return {
        "list_entries": entries,
        "rank_1": round(float(curve[0]), 5),
        "rank_5": round(float(curve[4]), 5),
        "rank_20": round(float(curve[19]), 5),
        "open_set_rank1_fnir_at_fpir": open_set,
    }


def identify_subjects(
    people: dict[str, list[str]],
    emb: EmbeddingSet,
    rules: tuple[str, ...] = ("max",),
    face_fmr_at: Callable[[float], float] | None = None,
    probes: EmbeddingSet | None = None,
) -> dict[str, object]:
    """Face lists (before: a list entry per enrolled face, so one person can fill several ranks) against
    subject lists (after: one entry per person, scored by each rule of ``facetrail.faces.subject_score``).

    Rank k: the mate is among the first k entries of the list. Open set at rank 1 as in ``identify``. With
    ``face_fmr_at`` (the model's calibration), the subject-level FMR is checked against the non-mated searches.
    ``probes``: the probes' embeddings when they differ from the gallery's (degraded probes, the gallery clean):
    a mated probe without a face is a miss at every rank, a non-mated one without a face is left out.
    """
    from facetrail.faces.subject_score import subject_scores_matrix

    split = split_subjects(people, emb)
    gallery = emb.subset(split.gallery).vectors
    probe_set = emb if probes is None else probes
    mated_set = probe_set.subset(split.mated_probes)
    nonmated_set = probe_set.subset(split.nonmated_probes)
    mated, nonmated = mated_set.vectors, nonmated_set.vectors[nonmated_set.found]
    names = sorted(set(split.gallery_people))
    subject_of = {p: i for i, p in enumerate(names)}
    groups = np.array([subject_of[p] for p in split.gallery_people])
    mate_subject = np.array([subject_of[p] for p in split.mated_people])
    mated_sim = mated @ gallery.T
    mated_sim[~mated_set.found] = -np.inf  # no face: no candidate list, a miss at every rank
    nonmated_sim = nonmated @ gallery.T

    # face list: the mate's first entry is its best-scoring face; it ranks after every other person's face
    # scoring at least as high (ties counted against it, as mate_ranks does), never after its own faces
    own = groups[None, :] == mate_subject[:, None]
    best_own = np.where(own, mated_sim, -np.inf).argmax(axis=1)
    best_own_score = mated_sim[np.arange(len(best_own)), best_own]
    face_ranks = 1 + (np.where(own, -np.inf, mated_sim) >= best_own_score[:, None]).sum(axis=1)
    face_ranks[~mated_set.found] = len(split.gallery) + 1  # no face: a miss at every rank
    faces_per_subject = np.bincount(groups)
    report: dict[str, object] = {
        "model_id": emb.model_id,
        "protocol": f"LFW people with >= {MULTI_PHOTO_MIN} photos: all but the last enrolled, the last is the probe",
        "gallery_faces": len(split.gallery),
        "gallery_subjects": len(names),
        "subjects_with_several_faces": int((faces_per_subject >= 2).sum()),
        "mean_faces_per_mated_subject": round(float(faces_per_subject[mate_subject].mean()), 3),
        "distractor_people": split.distractor_people,
        "mated_probes": len(split.mated_probes),
        "mated_probes_without_face": int((~mated_set.found).sum()),
        "nonmated_probes": int(nonmated_set.found.sum()),
        "nonmated_probes_without_face_excluded": int((~nonmated_set.found).sum()),
        "held_out_people": split.held_out_people,
        "fpir_resolution": round(1.0 / max(len(split.nonmated_probes), 1), 6),
        "face_list": _list_report(mated_sim, face_ranks, nonmated_sim, len(split.gallery)),
    }
    distinct = distinct_in_top(mated_sim, groups, 20)
    report["face_list"] |= {  # type: ignore[operator]
        "distinct_people_in_first_20_entries_mean": round(float(distinct.mean()), 3),
        "searches_whose_first_20_entries_repeat_a_person": round(float((distinct < 20).mean()), 5),
    }
    for rule in rules:
        with np.errstate(invalid="ignore"):
            mated_subj, _ = subject_scores_matrix(mated_sim, groups, rule)
        mated_subj[~mated_set.found] = -np.inf
        nonmated_subj, _ = subject_scores_matrix(nonmated_sim, groups, rule)
        subject_ranks = mate_ranks(mated_subj, mate_subject)
        subject_ranks[~mated_set.found] = len(names) + 1
        report[f"subject_list_{rule}"] = _list_report(mated_subj, subject_ranks, nonmated_subj, len(names))
    if face_fmr_at is not None:
        report["subject_fmr_check"] = subject_fmr_check(nonmated_sim, groups, face_fmr_at, (1e-2, 1e-3, 1e-4))
    return report


SUBJECT_FMR_BINS = ((1, 1), (2, 2), (3, 5), (6, 20), (21, 10**9))


def subject_fmr_check(
    nonmated_sim: np.ndarray, groups: np.ndarray, face_fmr_at: Callable[[float], float], fmrs: Sequence[float]
) -> list[dict[str, object]]:
    """The subject-level FMR the search shows (1 − (1 − p)^k, p the face-level FMR of the score) against what
    happens: for every non-mated probe and every enrolled subject (all different people), whether the subject's
    best face scores ≥ t, by the subject's number of faces k. ``fmrs``: face-level FMRs whose thresholds are
    checked (t from the face-level table). Predicted is the mean over the subjects of the bin."""
    from facetrail.faces.subject_score import subject_fmr, subject_scores_matrix

    best, _ = subject_scores_matrix(nonmated_sim, groups, "max")
    sizes = np.bincount(groups)
    rows: list[dict[str, object]] = []
    grid = np.linspace(-1.0, 1.0, 4001)
    table = np.array([face_fmr_at(float(t)) for t in grid])
    for target in fmrs:
        t = float(grid[np.nonzero(table <= target)[0][0]]) if (table <= target).any() else 1.0
        p = face_fmr_at(t)
        for low, high in SUBJECT_FMR_BINS:
            cols = (sizes >= low) & (sizes <= high)
            if not cols.any():
                continue
            observed = float((best[:, cols] >= t).mean())
            predicted = float(np.mean([subject_fmr(p, int(k)) for k in sizes[cols]]))
            rows.append(
                {
                    "threshold": round(t, 4),
                    "face_fmr": p,
                    "faces": f"{low}" if low == high else (f"{low}-{high}" if high < 10**9 else f">={low}"),
                    "subjects": int(cols.sum()),
                    "comparisons": int(best.shape[0] * cols.sum()),
                    "observed_subject_fmr": observed,
                    "predicted_subject_fmr": predicted,
                }
            )
    return rows
