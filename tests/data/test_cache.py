"""personlens.data.cache: keys, atomic saves, and invalid files read as missing."""
from __future__ import annotations

import numpy as np
import pytest

from personlens.data.cache import ArrayCache, key


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_keys_differ_when_parts_differ_and_are_stable():
    assert key(["a", "b"]) == key(["a", "b"])
    assert key(["a", "b"]) != key(["b", "a"])
    assert key({"paths": ["a"], "flip": True}) != key({"paths": ["a"], "flip": False})
    assert key("x", 1) != key("x", 2) != key("x")
    assert len(key("x")) == 20 and len(key("x", digest_size=6)) == 12
    # sorted keys by default: dict order does not matter ...
    assert key({"a": 1, "b": 2}) == key({"b": 2, "a": 1})
    # ... unless asked to keep it
    assert key({"a": 1, "b": 2}, sort_keys=False) != key({"b": 2, "a": 1}, sort_keys=False)


def test_save_load_round_trip_with_metadata(tmp_path):
    cache = ArrayCache(tmp_path, "model-abc")
    arr = np.arange(12, dtype=np.float16).reshape(3, 2, 2)
    path = cache.save("feats", arr, meta={"paths": ["a", "b", "c"]})
    assert path == tmp_path / "model-abc" / "feats.npy" == cache.path("feats")
    assert _files(cache.dir) == ["feats.json", "feats.npy"]   # no temporary files left
    np.testing.assert_array_equal(cache.load("feats"), arr)
    np.testing.assert_array_equal(cache.load("feats", shape=(3, None, 2), dtype=np.float16), arr)
    mm = cache.load("feats", mmap=True)
    assert isinstance(mm, np.memmap) and not mm.flags.writeable
    assert cache.load_meta("feats") == {"paths": ["a", "b", "c"]}
    assert cache.names() == ["feats"]
    # saving again replaces both files in place
    cache.save("feats", arr[:1], meta={"paths": ["a"]})
    assert _files(cache.dir) == ["feats.json", "feats.npy"]
    assert cache.load("feats").shape == (1, 2, 2) and cache.load_meta("feats") == {"paths": ["a"]}


def test_missing_wrong_shape_or_dtype_and_corrupt_files_read_as_missing(tmp_path):
    cache = ArrayCache(tmp_path)
    assert cache.load("nothing") is None and cache.load_meta("nothing") is None
    assert cache.names() == []
    cache.save("a", np.zeros((4, 3), np.float32))
    assert cache.load("a", shape=(5, 3)) is None
    assert cache.load("a", shape=(4,)) is None
    assert cache.load("a", shape=(4, 3, 1)) is None
    assert cache.load("a", dtype=np.float16) is None
    assert cache.load("a", shape=(4, None)) is not None
    cache.path("a").write_bytes(cache.path("a").read_bytes()[:60])   # truncated
    assert cache.load("a") is None and cache.load("a", mmap=True) is None
    cache.path("b").write_bytes(b"not an array")
    assert cache.load("b") is None
    cache.meta_path("b").write_text("{not json")
    assert cache.load_meta("b") is None
    cache.meta_path("c").write_text("[1, 2]")                  # JSON, but not an object
    assert cache.load_meta("c") is None


def test_a_failed_save_leaves_the_old_file_and_no_temporary_file(tmp_path):
    cache = ArrayCache(tmp_path)
    cache.save("a", np.ones(3))

    class Boom:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.save("a", Boom())
    assert _files(tmp_path) == ["a.npy"]
    np.testing.assert_array_equal(cache.load("a"), np.ones(3))


def test_writing_rows_is_atomic(tmp_path):
    cache = ArrayCache(tmp_path, "f")
    with cache.writing("lower", 5, np.float16) as w:
        w.put(0, np.ones((3, 2, 2)))
        assert not cache.path("lower").exists()               # only the temporary file so far
        w.put(3, np.full((2, 2, 2), 2.0))
    assert _files(cache.dir) == ["lower.npy"]
    got = cache.load("lower", shape=(5, 2, 2), dtype=np.float16)
    np.testing.assert_array_equal(got[:, 0, 0], [1, 1, 1, 2, 2])
    with pytest.raises(RuntimeError), cache.writing("lower", 5, np.float16) as w:
        w.put(0, np.zeros((3, 2, 2)))
        raise RuntimeError("interrupted")
    assert _files(cache.dir) == ["lower.npy"]                  # the old array is untouched
    np.testing.assert_array_equal(cache.load("lower")[:, 0, 0], [1, 1, 1, 2, 2])
    with cache.writing("empty", 0, np.float32):
        pass
    assert cache.load("empty").shape == (0,)


def test_lomo_cache_recomputes_a_corrupt_or_wrong_shaped_file(tmp_path, monkeypatch):
    """A feature cache built on ArrayCache: a bad file is treated as missing and rewritten."""
    import personlens.models.lomo as lomo
    from personlens.inference.pooled import lomo_features

    config = lomo.LomoConfig()
    calls = []

    def fake(img, cfg):
        calls.append(1)
        return np.full(cfg.dim, 0.5, np.float32)

    monkeypatch.setattr(lomo, "lomo_descriptor", fake)
    monkeypatch.setattr("personlens.inference.pooled.load_image", lambda p: None)
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    root = tmp_path / "colour"
    first = lomo_features(paths, config, cache_root=root, name="t", progress=False, workers=1)
    assert first.shape == (2, config.dim) and len(calls) == 2
    (folder,) = list(root.iterdir())
    (npy,) = list(folder.glob("t-*.npy"))
    assert _files(folder) == [npy.name]
    lomo_features(paths, config, cache_root=root, name="t", progress=False, workers=1)
    assert len(calls) == 2                                      # read from the cache
    for bad in (b"garbage", None):
        if bad is None:
            np.save(npy, np.zeros((2, 7), np.float16))          # wrong shape
        else:
            npy.write_bytes(bad)
        again = lomo_features(paths, config, cache_root=root, name="t", progress=False, workers=1)
        np.testing.assert_array_equal(again, first)
        assert _files(folder) == [npy.name]                     # rewritten in place
        assert ArrayCache(folder).load(npy.stem, shape=(2, config.dim)) is not None
    assert len(calls) == 6
