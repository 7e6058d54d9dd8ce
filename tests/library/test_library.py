"""PersonLibrary: idempotent, crash-safe indexing; search, filters and similar; index rebuilds."""
from __future__ import annotations

import hashlib
import re
import shutil

import numpy as np
import pytest
import torch
from crops_testlib import crop_image, write_crops

from personlens.index import VectorIndex
from personlens.library import (INDEX_FILES, PersonLibrary, UnknownAttributeError, parse_where)
from personlens.models.embedding import EmbeddingHead, EmbeddingHeadConfig, save_embedding_head
from personlens.inference.pipeline import PersonPipeline
from personlens.inference.records import PersonRecord

N = 9


@pytest.fixture()
def crops(tmp_path):
    return write_crops(tmp_path / "crops", N)


def _lib(tmp_path, pipeline, **kw):
    return PersonLibrary(tmp_path / "db", pipeline=pipeline, **kw)


def _store_is_clean(lib, expect: int):
    c = lib.store._conn
    assert c.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone() == (expect, expect)
    for kind in INDEX_FILES:
        assert len(lib.index(kind)) == lib.store.count(lib.model_version)


def test_index_is_idempotent_by_content(tmp_path, pipeline, crops):
    dup = crops[0].parent / "copy_of_first.png"
    shutil.copy(crops[0], dup)
    with _lib(tmp_path, pipeline) as lib:
        s = lib.index_paths([*crops, dup], batch_size=4, progress=False)
        assert (s.added, s.skipped_existing, s.reembedded, s.failed) == (N, 1, 0, [])
        assert s.total == N == len(lib)
        _store_is_clean(lib, N)
        s = lib.index_paths(crops, batch_size=4, progress=False)
        assert (s.added, s.skipped_existing) == (0, N)
    # a new process (library) sees the same; its indexes load without a rebuild
    with _lib(tmp_path, pipeline) as lib:
        built = []
        orig = lib.rebuild_index
        lib.rebuild_index = lambda kind: built.append(kind) or orig(kind)
        s = lib.index_paths([*crops, dup], progress=False)
        assert (s.added, s.skipped_existing) == (0, N + 1) and built == []
        rec = lib.store.get(lib.store.filter_ids({})[0])
        assert rec.path == str(crops[0].resolve()) and rec.model_version == pipeline.model_version


def test_bad_files_are_reported_and_skipped(tmp_path, pipeline, crops):
    bad = crops[0].parent / "bad.jpg"
    bad.write_bytes(b"not an image")
    seen = []
    with _lib(tmp_path, pipeline) as lib:
        s = lib.index_paths([crops[0], bad, tmp_path / "missing.png", crops[1]], batch_size=1,
                            progress=False, on_error=seen.append)
    assert s.added == 2 and [f.image for f in s.failed] == [str(bad), str(tmp_path / "missing.png")]
    assert seen == s.failed


def test_changed_model_is_reembedded_not_mixed(tmp_path, pipeline, par_model_dir, crops):
    with _lib(tmp_path, pipeline) as lib:
        lib.index_paths(crops, batch_size=4, progress=False)
    torch.manual_seed(3)
    head = save_embedding_head(EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=1280, out_dim=32)),
                               tmp_path / "reid-head")
    other = PersonPipeline(par_model_dir, reid_head=head, text_encoder=pipeline.text_encoder)
    assert other.model_version != pipeline.model_version
    with _lib(tmp_path, other) as lib:
        assert len(lib) == 0 and lib.stale_count() == N          # old records are not searched
        assert lib.search("a man", top_k=50) == []
        s = lib.index_paths(crops[:5], batch_size=2, progress=False)
        assert (s.added, s.reembedded, s.skipped_existing, s.total, s.stale) == (0, 5, 0, 5, N - 5)
        assert lib.store.model_versions() == {other.model_version: 5, pipeline.model_version: N - 5}
        assert lib.index("reid").dim == 32 and len(lib.index("reid")) == 5
        assert len(lib.similar(crops[0], top_k=50)) == 4
        s = lib.index_paths(crops, batch_size=4, progress=False)
        assert (s.reembedded, s.skipped_existing, s.stale) == (N - 5, 5, 0)
        _store_is_clean(lib, N)


def test_killed_mid_run_then_rerun_finishes_exactly(tmp_path, pipeline, crops, monkeypatch):
    lib = _lib(tmp_path, pipeline)
    real = pipeline.process
    calls = []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while the third batch was being computed
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "process", dying)
    with pytest.raises(KeyboardInterrupt):
        lib.index_paths(crops, batch_size=2, progress=False)
    assert lib.store.count() == 4                                  # two whole batches
    lib.close()
    monkeypatch.setattr(pipeline, "process", real)
    with _lib(tmp_path, pipeline) as lib:
        s = lib.index_paths(crops, batch_size=2, progress=False)
        assert (s.added, s.skipped_existing, s.total) == (N - 4, 4, N)
        _store_is_clean(lib, N)
        assert len(lib.search("a person", top_k=100)) == N


def test_failure_between_commit_and_index_update_rebuilds(tmp_path, pipeline, crops, monkeypatch):
    with _lib(tmp_path, pipeline) as lib:
        lib.index_paths(crops[:3], progress=False)
    boom = VectorIndex.add

    def failing_add(self, keys, vectors):
        raise RuntimeError("crash after the store committed")

    monkeypatch.setattr(VectorIndex, "add", failing_add)
    lib = _lib(tmp_path, pipeline)
    with pytest.raises(RuntimeError):
        lib.index_paths(crops, batch_size=N, progress=False)
    lib.close()
    monkeypatch.setattr(VectorIndex, "add", boom)
    with _lib(tmp_path, pipeline) as lib:
        assert lib.store.count() == N
        _store_is_clean(lib, N)                                      # rebuilt from the store
        assert len(lib.search("a person", top_k=100)) == N


def test_index_rebuilt_when_missing_corrupt_or_stale(tmp_path, pipeline, crops):
    with _lib(tmp_path, pipeline) as lib:
        lib.index_paths(crops, progress=False)
        want = [(h.record.id, round(h.score, 5)) for h in lib.search("a man", top_k=5)]
    db = tmp_path / "db"
    (db / INDEX_FILES["search"]).unlink()
    (db / INDEX_FILES["reid"]).write_bytes(b"garbage")
    with _lib(tmp_path, pipeline) as lib:
        assert [(h.record.id, round(h.score, 5)) for h in lib.search("a man", top_k=5)] == want
        assert len(lib.similar(crops[0], top_k=50)) == N - 1
    assert VectorIndex.load(db / INDEX_FILES["search"]).metadata["model_version"] == pipeline.model_version
    # another writer changed the store behind the saved index: detected by the generation
    with _lib(tmp_path, pipeline) as lib:
        lib.store.delete([lib.store.filter_ids({})[0]])
    with _lib(tmp_path, pipeline) as lib:
        assert len(lib.index("search")) == N - 1 == len(lib.search("a man", top_k=50))


def test_search_with_attribute_filters(tmp_path, pipeline, crops):
    with _lib(tmp_path, pipeline) as lib:
        lib.index_paths(crops, progress=False)
        recs = list(lib.store.iterate())
        for attr in ("carryingBackpack", "upperBodyBlack"):
            for wanted in (True, False):
                expect = {r.id for r in recs if (attr in r.present) == wanted}
                hits = lib.search("a man carrying a backpack", top_k=50, where={attr: wanted})
                assert {h.record.id for h in hits} == expect
                assert all((attr in h.record.present) == wanted for h in hits)
        assert any(0 < len(lib.filter({a: True})) < N for a in ("carryingBackpack", "upperBodyBlack"))
        hits = lib.search("a man carrying a backpack", top_k=3)
        assert [h.rank for h in hits] == [1, 2, 3]
        assert hits[0].score >= hits[1].score >= hits[2].score
        d = hits[0].to_dict()
        assert list(d) == ["id", "rank", "score", "path", "attributes", "present", "camera",
                           "timestamp", "timestamp_iso", "track_id", "description", "model_version"]
        assert d["attributes"] == hits[0].record.attributes            # every probability
        assert d["present"] == hits[0].record.top_present()            # most probable first
        assert d["path"] == hits[0].record.path and d["timestamp_iso"] is None
        with pytest.raises(UnknownAttributeError, match="did you mean 'accessoryHat'"):
            lib.search("x", where={"accessoryhat": True})
        assert lib.search("x", where={"accessoryHat": True, "personalMale": False}, top_k=5) == \
            [h for h in lib.search("x", top_k=50)
             if "accessoryHat" in h.record.present and "personalMale" not in h.record.present][:5]


def test_similar_finds_the_same_person(tmp_path, pipeline, crops):
    with _lib(tmp_path, pipeline) as lib:
        lib.index_paths(crops, progress=False)
        query = tmp_path / "query.jpg"
        crop_image(5).save(query, quality=85)                      # crop 5, re-encoded
        hits = lib.similar(query, top_k=3)
        assert hits[0].record.path == str(crops[5].resolve()) and hits[0].score > 0.95
        assert lib.similar(crop_image(5), top_k=1)[0].record.path == str(crops[5].resolve())
        own = lib.similar(crops[5], top_k=N)                       # the crop itself is left out
        assert len(own) == N - 1 and all(h.record.path != str(crops[5].resolve()) for h in own)
        assert lib.similar(crops[5], top_k=1, exclude_self=False)[0].score == pytest.approx(1, abs=1e-4)


def _two_camera_records(lib, pipeline, n=12, seed=0):
    """n people seen by cameras "a" and "b"; each camera adds a strong offset to everyone."""
    probe = pipeline.process([crop_image(0)], ["probe"], ids=["0" * 64])[0]
    rng = np.random.default_rng(seed)
    d = len(probe.reid_embedding)
    ident = rng.normal(size=(n, d))
    offset = {"a": rng.normal(size=d) * 10, "b": rng.normal(size=d) * 10}
    recs = []
    for cam in "ab":
        for i in range(n):
            e = ident[i] + offset[cam]
            recs.append(PersonRecord(id=hashlib.sha256(f"{cam}{i}".encode()).hexdigest(),
                                     path=f"/{cam}/{i}.png", attributes=probe.attributes,
                                     present=probe.present, search_embedding=probe.search_embedding,
                                     reid_embedding=e / np.linalg.norm(e),
                                     model_version=lib.model_version, camera=cam))
    lib.add_records(recs)
    return recs


def test_similar_with_camera_centring(tmp_path, pipeline):
    with _lib(tmp_path, pipeline) as lib:
        recs = _two_camera_records(lib, pipeline)
        q = recs[3]                                             # person 3 in camera a
        lib._reid_embedding = lambda _: (q.id, q.reid_embedding, q.camera)
        raw = lib.similar("q", top_k=5)
        assert all(h.record.camera == "a" for h in raw)         # the camera outweighs the person
        centred = lib.similar("q", top_k=5, camera_centring=True)
        assert centred[0].record.path == "/b/3.png" and q.id not in {h.record.id for h in centred}
        assert [h.rank for h in centred] == [1, 2, 3, 4, 5]
        assert all(a.score >= b.score for a, b in zip(centred, centred[1:]))
        stats = lib.camera_statistics()
        assert stats.counts == {"a": 12, "b": 12} and lib.camera_statistics() is stats  # cached
        # a query from outside the library: its camera comes from the caller
        lib._reid_embedding = lambda _: ("f" * 64, q.reid_embedding, None)
        top2 = lib.similar("q", top_k=2, camera_centring=True, camera="a")
        assert {h.record.path for h in top2} == {"/a/3.png", "/b/3.png"}     # itself, then b
        lib.delete([recs[0].id])
        assert lib.camera_statistics().counts == {"a": 11, "b": 12}  # the store changed


class _CountingStore:
    """Just what ``CameraStatsCache`` reads: generation, count and the records."""

    def __init__(self, n):
        rng = np.random.default_rng(0)
        self.records = []
        for i in range(n):
            self.add(rng)
        self.reads = 0

    def add(self, rng=np.random.default_rng(1)):
        e = rng.normal(size=4)
        self.records.append(type("R", (), {"reid_embedding": e / np.linalg.norm(e),
                                           "camera": "a" if len(self.records) % 2 else "b"}))

    def generation(self):
        return len(self.records)

    def count(self, model_version=None):
        return len(self.records)

    def iterate(self, model_version=None):
        self.reads += 1
        return iter(self.records)


def test_camera_stats_are_recomputed_only_for_real_changes():
    from personlens.library import CameraStatsCache

    store, cache = _CountingStore(100), CameraStatsCache(rel_change=0.02, max_age_s=600)
    first = cache.get(store, "v1")
    assert cache.get(store, "v1") is first and store.reads == 1       # nothing changed
    store.add()                                                        # 1 % more records
    assert cache.get(store, "v1") is first and store.reads == 1
    store.add(), store.add()                                           # 3 % more than when read
    assert cache.get(store, "v1") is not first and store.reads == 2
    assert cache.get(store, "v2") is not None and store.reads == 3    # another model
    eager = CameraStatsCache(rel_change=0.02, max_age_s=0)             # every change, at once
    eager.get(store, "v1")
    store.add()
    eager.get(store, "v1")
    assert store.reads == 5


def test_camera_centring_without_cameras_is_an_error(tmp_path, pipeline, crops):
    with _lib(tmp_path, pipeline) as lib:
        lib.index_paths(crops, progress=False)
        assert lib.camera_statistics() is None
        with pytest.raises(ValueError, match="--camera NAME"):
            lib.similar(crops[0], camera_centring=True)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_index_kind_is_remembered(tmp_path, pipeline, crops, kind):
    params = {"m": 8} if kind == "hnsw" else {"train_size": 4, "nlist": 2, "nprobe": 2}
    with _lib(tmp_path, pipeline, index_kind=kind, index_params=params) as lib:
        lib.index_paths(crops, batch_size=4, progress=False)
        assert lib.index("search").kind == kind and lib.index("search").is_ann
    with _lib(tmp_path, pipeline) as lib:
        assert lib.index_config == {"kind": kind, "params": params}
        assert len(lib.search("a man", top_k=50)) == N
    with _lib(tmp_path, pipeline, index_kind="flat") as lib:       # switching kind rebuilds
        assert lib.index("search").kind == "flat" and len(lib.index("search")) == N


def test_parse_where():
    assert parse_where(["a=yes", "b=No", "c=true", "d=0"]) == {"a": True, "b": False, "c": True, "d": False}
    for bad in ("a", "a=maybe", "=yes"):
        with pytest.raises(ValueError):
            parse_where([bad])


def test_parse_where_refuses_contradictions():
    assert parse_where(["personalMale=yes", "personalMale=YES", "hairLong=no"]) == \
        {"personalMale": True, "hairLong": False}              # the same condition twice is fine
    for items in (["personalMale=yes", "personalMale=no"], ["personalMale=n", "personalMale=true"]):
        with pytest.raises(ValueError, match="personalMale"):
            parse_where(items)


def test_where_values_are_booleans_or_yes_no(tmp_path, pipeline, crops):
    with _lib(tmp_path, pipeline) as lib:
        lib.index_paths(crops, progress=False)
        everyone = lib.search("a person", top_k=50)
        men = {h.record.id for h in everyone if "personalMale" in h.record.present}
        assert men                                               # else the test proves nothing
        others = [h.record.id for h in lib.search("a person", top_k=50, where={"personalMale": False})]
        assert not men & set(others)
        for no in ("no", "No", "NO", "false", "n"):             # a string is not just "truthy"
            hits = lib.search("a person", top_k=50, where={"personalMale": no})
            assert [h.record.id for h in hits] == others, no
        yes = lib.search("a person", top_k=50, where={"personalMale": "Yes"})
        assert {h.record.id for h in yes} == men
        assert {r.id for r in lib.filter({"personalMale": "no"})} == set(others)
        for bad in ("maybe", 3, None, 1.0):
            for call in (lambda w: lib.search("x", where=w), lib.filter,
                         lambda w: lib.similar(crops[0], where=w)):
                with pytest.raises(ValueError, match=re.escape(f"personalMale={bad!r}")):
                    call({"personalMale": bad})


def test_missing_library_is_not_created(tmp_path):
    from personlens.library import LibraryNotFoundError

    with pytest.raises(LibraryNotFoundError):
        PersonLibrary(tmp_path / "nope", create=False)
    assert not (tmp_path / "nope").exists()


def test_filter_cache_reuses_a_compiled_filter_until_the_store_changes():
    from personlens.index import VectorIndex
    from personlens.library import FilterCache

    class Store:
        gen, calls = 0, 0

        def generation(self):
            return self.gen

        def filter_ids(self, where, model_version):
            self.calls += 1
            return ["a", "c"]

    idx = VectorIndex.build(["a", "b", "c"], np.eye(3, dtype=np.float32))
    store, cache = Store(), FilterCache(size=2)
    first = cache.get(idx, store, "v1", {"hairLong": True})
    assert cache.get(idx, store, "v1", {"hairLong": True}) is first and store.calls == 1
    assert {h for h, _ in idx.search(np.ones(3, np.float32), 3, first)} == {"a", "c"}
    cache.get(idx, store, "v1", {"hairLong": False})
    cache.get(idx, store, "v2", {"hairLong": True})        # evicts the first (size 2)
    assert store.calls == 3
    cache.get(idx, store, "v1", {"hairLong": True})
    store.gen += 1                                           # a write: compiled again
    cache.get(idx, store, "v1", {"hairLong": True})
    assert store.calls == 5
