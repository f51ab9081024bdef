"""The vector indexes: exact equals brute force, removal really deletes, persistence, checksum, recall."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from facetrail.index import (
    ApproximateIndex,
    ExactIndex,
    VectorIndex,
    load_index,
    make_index,
    vector_set_checksum,
)
from facetrail.index.faiss_index import CentroidTable, soar_second_lists, write_index_file

DIM = 32


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, identities: int, per_identity: int, noise_sq: float = 0.6):
    """Face-like data: samples of one identity have cosine ≈ 1/(1+noise_sq) to each other."""
    centres = unit_rows(rng, identities)
    labels = np.repeat(np.arange(identities), per_identity)
    noise = rng.standard_normal((len(labels), DIM)).astype(np.float32) * np.sqrt(noise_sq / DIM)
    x = centres[labels] + noise
    return labels, x / np.linalg.norm(x, axis=1, keepdims=True), centres


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.mark.parametrize("kind", ["exact", "approximate"])
def test_factory_builds_a_vector_index(kind: str) -> None:
    index = make_index(kind, DIM)
    assert isinstance(index, VectorIndex)
    assert index.kind == kind and index.dim == DIM and len(index) == 0
    scores, ids = index.search(np.ones((2, DIM), np.float32) / np.sqrt(DIM), 5)
    assert scores.shape == ids.shape == (2, 0)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown index kind"):
        make_index("hnsw-of-my-dreams", DIM)


def test_exact_search_equals_numpy_brute_force(rng: np.random.Generator) -> None:
    gallery = unit_rows(rng, 3000)
    ids = rng.permutation(10_000)[:3000].astype(np.int64)
    index = ExactIndex(DIM)
    index.add(ids[:1000], gallery[:1000])
    index.add(ids[1000:], gallery[1000:])
    queries = unit_rows(rng, 20)
    scores, found = index.search(queries, 10)

    brute = queries @ gallery.T
    expected_rows = np.argsort(-brute, axis=1)[:, :10]
    np.testing.assert_array_equal(found, ids[expected_rows])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected_rows, axis=1), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_k_larger_than_the_gallery_returns_what_there_is(rng: np.random.Generator) -> None:
    index = ExactIndex(DIM)
    index.add(np.array([5, 9]), unit_rows(rng, 2))
    _, ids = index.search(unit_rows(rng, 1), 10)
    assert ids.shape == (1, 2) and set(ids[0]) == {5, 9}


def test_adding_an_id_twice_is_refused(rng: np.random.Generator) -> None:
    index = ExactIndex(DIM)
    index.add(np.array([1, 2, 3]), unit_rows(rng, 3))
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.array([4, 2]), unit_rows(rng, 2))
    with pytest.raises(ValueError, match="duplicate"):
        index.add(np.array([7, 7]), unit_rows(rng, 2))
    assert len(index) == 3


def test_wrong_shapes_and_bad_values_are_refused(rng: np.random.Generator) -> None:
    index = ExactIndex(DIM)
    with pytest.raises(ValueError, match="shape"):
        index.add(np.array([1]), unit_rows(rng, 1, DIM + 1))
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.array([1]), np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        index.add(np.array([-1]), unit_rows(rng, 1))


@pytest.mark.parametrize("kind", ["exact", "approximate"])
def test_removed_ids_are_never_returned_and_can_be_re_added(kind: str, rng: np.random.Generator) -> None:
    gallery = unit_rows(rng, 500)
    index = make_index(kind, DIM)
    index.add(np.arange(500), gallery)
    gone = np.arange(0, 500, 3)
    assert index.remove(np.concatenate([gone, [10_000]])) == len(gone)  # absent ids are ignored
    assert len(index) == 500 - len(gone)
    _, ids = index.search(gallery[gone], 5)  # each removed vector's own query
    assert not np.isin(ids, gone).any()
    index.add(gone[:2], gallery[gone[:2]])
    _, ids = index.search(gallery[gone[:2]], 1)
    np.testing.assert_array_equal(ids[:, 0], gone[:2])


@pytest.mark.parametrize("kind", ["exact", "approximate"])
def test_removed_vector_bytes_are_absent_from_the_saved_file(
    kind: str, rng: np.random.Generator, tmp_path: Path
) -> None:
    params = {"nlist": 8, "min_train_size": 300} if kind == "approximate" else {}
    index = make_index(kind, DIM, **params)
    gallery = unit_rows(rng, 400)
    index.add(np.arange(400), gallery)
    before = tmp_path / "before.ftidx"
    index.save(before)
    victim = gallery[123].tobytes()
    assert victim in before.read_bytes()  # the check below would be vacuous otherwise

    index.remove(np.array([123]))
    after = tmp_path / "after.ftidx"
    index.save(after)
    data = after.read_bytes()
    assert victim not in data
    assert gallery[124].tobytes() in data


@pytest.mark.parametrize(("kind", "codec"), [("exact", ""), ("approximate", "pq-fastscan"), ("approximate", "sq8")])
def test_save_load_round_trip(kind: str, codec: str, rng: np.random.Generator, tmp_path: Path) -> None:
    params = {"nlist": 16, "nprobe": 4, "min_train_size": 1000, "codec": codec} if kind == "approximate" else {}
    index = make_index(kind, DIM, **params)
    _, gallery, _ = clustered(rng, 600, 3)
    index.add(np.arange(len(gallery)) * 2, gallery)
    if isinstance(index, ApproximateIndex):
        assert index.trained
    path = tmp_path / "gallery.ftidx"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.ftidx"]  # no temp file left behind

    loaded = load_index(path)
    assert type(loaded) is type(index) and loaded.dim == DIM and len(loaded) == len(index)
    assert loaded.checksum() == index.checksum()
    queries = unit_rows(rng, 10)
    for a, b in zip(index.search(queries, 5), loaded.search(queries, 5), strict=True):
        np.testing.assert_array_equal(a, b)
    # the loaded index keeps working: duplicate checks and removal survive the round trip
    with pytest.raises(ValueError, match="already"):
        loaded.add(np.array([0]), gallery[:1])
    assert loaded.remove(np.array([0, 2])) == 2


def test_loading_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-an-index"
    path.write_bytes(b"hello world, definitely not faiss")
    with pytest.raises(ValueError, match="not a FaceTrail index"):
        load_index(path)


def test_checksum_is_order_independent_and_tracks_content(rng: np.random.Generator) -> None:
    ids = np.arange(100, 400, dtype=np.int64)
    gallery = unit_rows(rng, len(ids))
    forward, shuffled = ExactIndex(DIM), ExactIndex(DIM)
    forward.add(ids, gallery)
    order = rng.permutation(len(ids))
    shuffled.add(ids[order[:150]], gallery[order[:150]])
    shuffled.add(ids[order[150:]], gallery[order[150:]])
    assert forward.checksum() == shuffled.checksum() == vector_set_checksum(ids[order], gallery[order])

    # the same vectors under other ids, one changed float, one face fewer: all different
    relabelled = ExactIndex(DIM)
    relabelled.add(ids[::-1].copy(), gallery)
    assert relabelled.checksum() != forward.checksum()
    tweaked = gallery.copy()
    tweaked[17, 3] = np.nextafter(tweaked[17, 3], np.float32(2))
    assert vector_set_checksum(ids, tweaked) != forward.checksum()
    shuffled.remove(ids[:1])
    assert shuffled.checksum() != forward.checksum()
    assert shuffled.checksum() == vector_set_checksum(ids[1:], gallery[1:])


@pytest.mark.parametrize("codec", ["pq-fastscan", "sq8"])
def test_approximate_recall_on_clustered_data(codec: str, rng: np.random.Generator) -> None:
    labels, gallery, centres = clustered(rng, 4000, 2, noise_sq=0.4)
    index = ApproximateIndex(DIM, nlist=64, nprobe=32, rerank=100, codec=codec)
    index.add(np.arange(len(gallery)), gallery)
    assert index.trained  # 8000 vectors ≥ 64 × 39

    exact = ExactIndex(DIM)
    exact.add(np.arange(len(gallery)), gallery)
    probe_identities = rng.choice(4000, size=300, replace=False)
    noise = rng.standard_normal((300, DIM)).astype(np.float32) * np.sqrt(0.4 / DIM)
    probes = centres[probe_identities] + noise
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)

    approx_scores, approx_ids = index.search(probes, 10)
    exact_scores, exact_ids = exact.search(probes, 10)
    found_best = np.mean([exact_ids[i, 0] in approx_ids[i] for i in range(300)])
    assert found_best >= 0.97
    # scores are exact inner products after the re-rank, so where ids agree, scores agree
    same = approx_ids[:, 0] == exact_ids[:, 0]
    np.testing.assert_allclose(approx_scores[same, 0], exact_scores[same, 0], atol=1e-5)
    exact_mate_rate = np.mean(labels[exact_ids[:, 0]] == probe_identities)
    approx_mate_rate = np.mean(labels[approx_ids[:, 0]] == probe_identities)
    assert exact_mate_rate >= 0.95  # the data are face-like: the mate usually wins
    assert approx_mate_rate >= exact_mate_rate - 0.03
    # fewer lists probed finds fewer of the true best matches: the knob is real
    _, narrow_ids = index.search(probes, 10, nprobe=1)
    assert np.mean([exact_ids[i, 0] in narrow_ids[i] for i in range(300)]) < found_best


@pytest.mark.parametrize("params", [{"pq_subquantizers": 4}, {"quantizer": "hnsw"}, {"scan_implem": 0}])
def test_approximate_variants_find_mates_and_survive_a_round_trip(
    params: dict[str, object], rng: np.random.Generator, tmp_path: Path
) -> None:
    labels, gallery, centres = clustered(rng, 4000, 2, noise_sq=0.4)
    index = ApproximateIndex(DIM, nlist=64, nprobe=32, rerank=100, **params)  # type: ignore[arg-type]
    index.add(np.arange(len(gallery)), gallery)
    assert index.trained
    probe_identities = rng.choice(4000, size=200, replace=False)
    probes = centres[probe_identities] + rng.standard_normal((200, DIM)).astype(np.float32) * np.sqrt(0.4 / DIM)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    _, ids = index.search(probes, 10)
    assert np.mean(labels[ids[:, 0]] == probe_identities) >= 0.9
    path = tmp_path / "variant.ftidx"
    index.save(path)
    loaded = load_index(path)
    assert isinstance(loaded, ApproximateIndex)
    for name, value in params.items():
        assert getattr(loaded, name) == value
    for a, b in zip(index.search(probes, 5), loaded.search(probes, 5), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("codec", ["pq-fastscan", "sq8"])
def test_spilled_index_holds_each_face_twice_and_returns_it_once(
    codec: str, rng: np.random.Generator, tmp_path: Path
) -> None:
    labels, gallery, centres = clustered(rng, 3000, 2, noise_sq=0.8)
    spilled = ApproximateIndex(DIM, nlist=64, nprobe=4, rerank=50, codec=codec, spill=2)
    plain = ApproximateIndex(DIM, nlist=64, nprobe=4, rerank=50, codec=codec, spill=1)
    for index in (spilled, plain):
        index.add(np.arange(len(gallery)), gallery)
        assert index.trained
    assert spilled.list_entries == 2 * len(gallery) and plain.list_entries == len(gallery)
    # adding after training spills too
    extra = unit_rows(rng, 37)
    spilled.add(np.arange(10_000, 10_037), extra)
    assert spilled.list_entries == 2 * (len(gallery) + 37)
    _, ids = spilled.search(extra, 1, nprobe=64)
    np.testing.assert_array_equal(ids[:, 0], np.arange(10_000, 10_037))

    probe_identities = rng.choice(3000, size=400, replace=False)
    probes = centres[probe_identities] + rng.standard_normal((400, DIM)).astype(np.float32) * np.sqrt(0.8 / DIM)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    _, spilled_ids = spilled.search(probes, 10)
    _, plain_ids = plain.search(probes, 10)
    for row in spilled_ids:  # a face reached through both of its lists is one candidate
        found = row[row >= 0]
        assert len(np.unique(found)) == len(found)

    def mate_rate(ids: np.ndarray) -> float:
        known = ids >= 0
        identity = np.where(known, labels[np.where(known, ids, 0) % len(labels)], -1)
        return float(np.mean((identity == probe_identities[:, None]).any(axis=1)))

    # the second list is what spilling is for: at the same nprobe it reaches mates plain IVF misses
    assert mate_rate(spilled_ids) > mate_rate(plain_ids) + 0.02

    # removal takes out both copies; the file keeps the setting
    gone = np.arange(0, 600)
    assert spilled.remove(gone) == 600
    assert spilled.list_entries == 2 * (len(gallery) + 37 - 600)
    _, ids = spilled.search(gallery[gone], 10, nprobe=64)
    assert not np.isin(ids, gone).any()
    path = tmp_path / "spilled.ftidx"
    spilled.save(path)
    loaded = load_index(path)
    assert isinstance(loaded, ApproximateIndex) and loaded.spill == 2
    assert loaded.list_entries == spilled.list_entries
    for a, b in zip(spilled.search(probes, 5), loaded.search(probes, 5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_soar_choice_equals_its_definition(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner-product algebra (with and without the Gram matrix) picks the list the SOAR loss defines."""
    index = ApproximateIndex(DIM, nlist=32, min_train_size=1500, spill=1)
    index.add(np.arange(2000), unit_rows(rng, 2000))
    ivf = index._ivf
    x = unit_rows(rng, 300) * rng.uniform(0.5, 2.0, (300, 1)).astype(np.float32)  # any norm
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    _, lists = ivf.quantizer.search(x, 16)
    expected = []
    for row, vector in enumerate(x):
        primary = vector - centroids[lists[row, 0]]
        primary /= np.linalg.norm(primary)
        residuals = vector - centroids[lists[row, 1:]]
        loss = (residuals**2).sum(1) + 1.5 * (residuals @ primary) ** 2
        expected.append(lists[row, 1 + int(np.argmin(loss))])
    with_gram = soar_second_lists(ivf, x, 1.5)
    monkeypatch.setattr(CentroidTable, "GRAM_MAX_LISTS", 0)  # large-nlist path: centroid products per vector
    without_gram = soar_second_lists(ivf, x, 1.5)
    assert CentroidTable(ivf).gram is None
    assert np.mean(with_gram == np.array(expected)) > 0.99  # ties within float error may differ
    assert np.mean(without_gram == np.array(expected)) > 0.99
    assert not np.any(with_gram == lists[:, 0])  # never the primary list


def test_index_files_from_before_spilling_load_as_one_list_per_face(rng: np.random.Generator, tmp_path: Path) -> None:
    index = ApproximateIndex(DIM, nlist=16, nprobe=4, min_train_size=1000, spill=1)
    _, gallery, _ = clustered(rng, 600, 3)
    index.add(np.arange(len(gallery)), gallery)
    header = index.header()
    del header["params"]["spill"], header["params"]["spill_lambda"]  # what older versions wrote
    path = tmp_path / "old.ftidx"
    with path.open("wb") as fh:
        write_index_file(fh, header, index.write_blobs)
    loaded = load_index(path)
    assert isinstance(loaded, ApproximateIndex) and loaded.spill == 1 and loaded.list_entries == len(gallery)
    queries = unit_rows(rng, 5)
    np.testing.assert_array_equal(index.search(queries, 5)[1], loaded.search(queries, 5)[1])


def test_approximate_refuses_bad_variants() -> None:
    with pytest.raises(ValueError, match="pq_subquantizers"):
        ApproximateIndex(DIM, pq_subquantizers=5)
    with pytest.raises(ValueError, match="quantizer"):
        ApproximateIndex(DIM, quantizer="kd-tree")
    with pytest.raises(ValueError, match="spill"):
        ApproximateIndex(DIM, spill=3)


def test_approximate_is_exact_below_the_training_threshold(rng: np.random.Generator) -> None:
    gallery = unit_rows(rng, 200)
    index = ApproximateIndex(DIM, nlist=64)
    index.add(np.arange(200), gallery)
    assert not index.trained
    exact = ExactIndex(DIM)
    exact.add(np.arange(200), gallery)
    queries = unit_rows(rng, 5)
    np.testing.assert_array_equal(index.search(queries, 7)[1], exact.search(queries, 7)[1])


def test_concurrent_searches_and_mutations_stay_consistent(rng: np.random.Generator) -> None:
    index = ExactIndex(DIM)
    gallery = unit_rows(rng, 2000)
    index.add(np.arange(1000), gallery[:1000])
    errors: list[BaseException] = []

    def searcher() -> None:
        try:
            for _ in range(200):
                scores, ids = index.search(gallery[:3], 5)
                assert np.all(ids >= 0) and np.all(np.diff(scores, axis=1) <= 0)
        except BaseException as exc:  # surfaced below: a thread's assertion would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(1000, 2000, 100):
        index.add(np.arange(start, start + 100), gallery[start : start + 100])
        index.remove(np.arange(start - 1000, start - 950))
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 2000 - 500
    assert index.checksum() == vector_set_checksum(
        np.concatenate([np.arange(s + 50, s + 100) for s in range(0, 1000, 100)] + [np.arange(1000, 2000)]),
        np.concatenate([gallery[s + 50 : s + 100] for s in range(0, 1000, 100)] + [gallery[1000:]]),
    )
