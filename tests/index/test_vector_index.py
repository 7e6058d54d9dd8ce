"""VectorIndex: exact search, ANN recall, filtered search, removal, atomic save/load."""
from __future__ import annotations

import numpy as np
import pytest

from personlens.index import IndexFileError, VectorIndex, faiss_id

DIM = 32


def clustered(n: int, dim: int = DIM, clusters: int = 40, spread: float = 0.35, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_topk(x, ids, q, k, allowed=None):
    s = x @ q
    order = [i for i in np.argsort(-s, kind="stable") if allowed is None or ids[i] in allowed]
    return [ids[i] for i in order[:k]]


@pytest.fixture(scope="module")
def data():
    x = clustered(4000)
    ids = [f"rec{i:05d}" for i in range(len(x))]
    q = clustered(50, seed=1)
    return x, ids, q


ANN = [("hnsw", {"m": 16, "ef_construction": 80, "ef_search": 64}),
       ("ivf", {"nlist": 64, "nprobe": 8, "train_size": 1000})]


def test_flat_is_exact(data):
    x, ids, q = data
    idx = VectorIndex.build(ids, x)
    for row in q[:10]:
        hits = idx.search(row, 10)
        assert [h for h, _ in hits] == exact_topk(x, ids, row, 10)
        assert np.allclose([s for _, s in hits], np.sort(x @ row)[::-1][:10], atol=1e-5)
    assert len(idx) == 4000 and "rec00001" in idx and not idx.is_ann


@pytest.mark.parametrize("kind, params", ANN)
def test_ann_recall_vs_exact(data, kind, params):
    x, ids, q = data
    idx = VectorIndex.build(ids, x, kind=kind, **params)
    assert idx.is_ann
    recall = np.mean([len(set(h for h, _ in idx.search(row, 10)) & set(exact_topk(x, ids, row, 10))) / 10
                      for row in q])
    assert recall >= 0.9, recall


def test_ivf_is_exact_until_trained():
    x = clustered(600)
    ids = [f"r{i}" for i in range(600)]
    idx = VectorIndex(DIM, "ivf", train_size=500, nlist=8)
    idx.add(ids[:400], x[:400])
    assert not idx.is_ann and idx.nlist is None
    assert [h for h, _ in idx.search(x[5], 5)] == exact_topk(x[:400], ids[:400], x[5], 5)
    idx.add(ids[400:], x[400:])
    assert idx.is_ann and idx.nlist == 8 and idx.trained_n == 600 and len(idx) == 600
    assert not idx.wants_retrain
    more = clustered(4300, seed=5)
    idx.add([f"m{i}" for i in range(4300)], more)
    assert idx.wants_retrain


@pytest.mark.parametrize("kind, params", [("flat", {}), *ANN])
@pytest.mark.parametrize("brute_force_max", [0, 20000])
def test_filtered_search_only_returns_allowed(data, kind, params, brute_force_max):
    x, ids, q = data
    idx = VectorIndex.build(ids, x, kind=kind, **params)
    idx.brute_force_max = brute_force_max
    allowed = set(ids[::3])
    for row in q[:5]:
        got = [h for h, _ in idx.search(row, 10, allowed_ids=allowed)]
        assert len(got) == 10 and set(got) <= allowed
        want = exact_topk(x, ids, row, 10, allowed)
        assert len(set(got) & set(want)) >= (10 if kind == "flat" or brute_force_max else 8)
    tiny = {ids[7], ids[8], "unknown"}
    assert {h for h, _ in idx.search(q[0], 10, allowed_ids=tiny)} == {ids[7], ids[8]}
    assert idx.search(q[0], 10, allowed_ids=[]) == []
    assert idx.search(q[0], 10, allowed_ids=["unknown"]) == []


@pytest.mark.parametrize("kind, params", [("flat", {}), *ANN])
def test_remove_and_replace(data, kind, params):
    x, ids, q = data
    idx = VectorIndex.build(ids[:1500], x[:1500], kind=kind, **params)
    target = ids[10]
    assert idx.search(x[10], 1)[0][0] == target
    assert idx.remove([target, "never-added"]) == 1
    assert target not in idx and len(idx) == 1499
    assert all(h != target for h, _ in idx.search(x[10], 20))
    idx.add([target], x[10:11])
    assert idx.search(x[10], 1)[0][0] == target and len(idx) == 1500
    # replacing an id's vector moves it
    idx.add([target], x[11:12])
    assert len(idx) == 1500
    assert np.allclose(idx.vectors([target])[0], x[11])


def test_hnsw_tombstones_are_compacted(data):
    x, ids, _ = data
    idx = VectorIndex.build(ids[:500], x[:500], kind="hnsw", m=8)
    idx.remove(ids[:50])
    assert idx._index.ntotal == 500 and len(idx._tombstones) == 50
    assert all(h not in ids[:50] for h, _ in idx.search(x[0], 30))
    idx.remove(ids[50:120])  # past 20%: rebuilt without them
    assert idx._index.ntotal == 380 and not idx._tombstones


def test_add_validation():
    idx = VectorIndex(4)
    with pytest.raises(ValueError, match="dimension"):
        idx.add(["a"], np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="duplicate"):
        idx.add(["a", "a"], np.eye(4, dtype=np.float32)[:2])
    with pytest.raises(ValueError, match="NaN"):
        idx.add(["a"], np.full((1, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="kind"):
        VectorIndex(4, "lsh")
    with pytest.raises(ValueError, match="parameters"):
        VectorIndex(4, "flat", nprobe=3)
    assert VectorIndex(4).search(np.ones(4, np.float32), 5) == []
    assert faiss_id("a") == faiss_id("a") != faiss_id("b") and faiss_id("a") >= 0


@pytest.mark.parametrize("kind, params", [("flat", {}), *ANN])
def test_save_load_roundtrip(tmp_path, data, kind, params):
    x, ids, q = data
    idx = VectorIndex.build(ids[:1200], x[:1200], kind=kind, metadata={"model_version": "mv1"}, **params)
    idx.remove(ids[:5])
    path = idx.save(tmp_path / "sub" / "search.index")
    assert [p.name for p in path.parent.iterdir()] == ["search.index"]  # no temporary left
    back = VectorIndex.load(path)
    assert back.metadata == {"model_version": "mv1"} and back.kind == kind
    assert back.params == idx.params and len(back) == 1195 and back.trained_n == idx.trained_n
    for row in q[:5]:
        assert back.search(row, 10) == idx.search(row, 10)
    back.add(ids[:5], x[:5])
    assert len(back) == 1200


def test_load_refuses_broken_files(tmp_path, data):
    x, ids, _ = data
    path = VectorIndex.build(ids[:100], x[:100]).save(tmp_path / "a.index")
    raw = path.read_bytes()
    with pytest.raises(IndexFileError, match="no such file"):
        VectorIndex.load(tmp_path / "missing.index")
    (tmp_path / "t.index").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IndexFileError):
        VectorIndex.load(tmp_path / "t.index")
    (tmp_path / "n.index").write_bytes(b"hello")
    with pytest.raises(IndexFileError, match="not a personlens"):
        VectorIndex.load(tmp_path / "n.index")


def test_save_keeps_old_file_when_writing_fails(tmp_path, data, monkeypatch):
    import faiss

    x, ids, _ = data
    path = VectorIndex.build(ids[:10], x[:10]).save(tmp_path / "a.index")
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", boom)
    with pytest.raises(RuntimeError):
        VectorIndex.build(ids[:20], x[:20]).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["a.index"]


@pytest.mark.parametrize("kind, params", [("flat", {}), *ANN])
@pytest.mark.parametrize("brute_force_max", [0, 20000])
def test_compiled_filter_matches_ids_and_skips_later_removals(data, kind, params, brute_force_max):
    x, ids, q = data
    idx = VectorIndex.build(ids, x, kind=kind, **params)
    idx.brute_force_max = brute_force_max
    allowed = ids[1::4] + ["unknown"]
    compiled = idx.compile_filter(allowed)
    assert len(compiled) == len(ids[1::4])
    for row in q[:3]:
        assert idx.search(row, 10, compiled) == idx.search(row, 10, allowed)
    gone = [h for h, _ in idx.search(q[0], 3, compiled)]
    idx.remove(gone)
    got = [h for h, _ in idx.search(q[0], 10, compiled)]
    assert len(got) == 10 and not set(got) & set(gone) and set(got) <= set(allowed)
