"""PersonLibrary.adapt / reset_adaptation end to end on the fixture model: saved, applied on
reopening, per camera, re-embedding; refused or unchanged for bad input and another model."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from crops_testlib import write_crops

from personlens.inference.adapt import AdaptSettings, bn_layers, score_statistics
from personlens.inference.adaptation import ADAPTATION_FILE, STATS_FILE, Adaptation, AdaptationError, CameraAdaptation
from personlens.inference.pipeline import PersonPipeline
from personlens.library import PersonLibrary
from personlens.models import hub

# fewer crops scored for the thresholds (the default 600 would be all 60): keeps the test fast
FAST = AdaptSettings(threshold_crops=12, normalisation=True)
THRESHOLDS_ONLY = AdaptSettings(normalisation=False, threshold_crops=12)
FEWER = AdaptSettings(threshold_crops=12, min_crops=20, normalisation=True)      # a second camera on 20 crops


@pytest.fixture(scope="module")
def model_dir(par_model_dir, tmp_path_factory):
    """The fixture model with a val_scores.json (scores that separate the classes, as a
    trained model's do: else no threshold could move)."""
    d = shutil.copytree(par_model_dir, tmp_path_factory.mktemp("adapt") / "model")
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 4)) < 0.4).astype(int)
    labels[:2] = [[0] * 4, [1] * 4]                           # both classes per attribute
    probs = 1 / (1 + np.exp(-(2.0 * labels - 1 + rng.normal(size=labels.shape))))
    names = json.loads((d / hub.CONFIG_FILE).read_text())["attributes"]
    hub.write_scores(d, score_statistics(probs, labels, names, "val"))
    return d


@pytest.fixture(scope="module")
def adapt_crops(tmp_path_factory):
    return write_crops(tmp_path_factory.mktemp("adapt-crops"), 60, start=100)


@pytest.fixture()
def make_pipe(model_dir, pipeline):
    """A fresh pipeline per library (adapting changes it); the session's text encoder."""
    return lambda: PersonPipeline(model_dir, search_head=None, reid_head=None, describer=None,
                                  text_encoder=pipeline.text_encoder)


@pytest.fixture()
def crops(tmp_path):
    return write_crops(tmp_path / "crops", 6)


def _files(db):
    return [(db / f).exists() for f in (ADAPTATION_FILE, STATS_FILE)]


def _bn(pipe):
    return {f"{n}.{b}": getattr(m, b).clone() for n, m in bn_layers(pipe.predictor.model.encoder).items()
            for b in ("running_mean", "running_var")}


def test_adapt_reembeds_persists_and_resets(tmp_path, make_pipe, crops, adapt_crops):
    db = tmp_path / "db"
    with PersonLibrary(db, pipeline=make_pipe()) as lib:
        lib.index_paths(crops, progress=False)
        mv0 = lib.model_version
        s = lib.adapt(adapt_crops, settings=FAST)
        assert _files(db) == [True, True]
        mv1 = lib.model_version
        assert mv1 != mv0 and s.model_version == mv1
        assert (s.camera, s.crops, s.reembedded, s.reembed_failed) == ("*", 60, 6, [])
        assert lib.store.count(mv1) == lib.store.count() == 6 == len(lib)
        entry = lib.adaptation.cameras["*"]
        assert entry.bn is not None
        np.testing.assert_array_equal(lib.pipeline.predictor.thresholds, entry.thresholds)
        assert not np.allclose(entry.thresholds, lib.pipeline.predictor.base_thresholds, atol=1e-4)
    with PersonLibrary(db, pipeline=make_pipe()) as lib:        # another process: applied
        assert lib.model_version == mv1 and lib.stale_count() == 0
        pipe = lib.pipeline
        np.testing.assert_allclose(pipe.predictor.thresholds, entry.thresholds, atol=1e-6)   # JSON: 6 decimals
        applied = _bn(pipe)
        assert set(applied) == set(entry.bn) and all(np.allclose(applied[k], entry.bn[k]) for k in applied)
        found, n, failed = lib.reset_adaptation()
        assert (found, n, failed) == (True, 6, [])
        assert _files(db) == [False, False]
        assert lib.model_version == mv0 and lib.store.count(mv0) == 6
        np.testing.assert_array_equal(pipe.predictor.thresholds, pipe.predictor.base_thresholds)
    with PersonLibrary(db, pipeline=make_pipe()) as lib:
        assert lib.model_version == mv0 and lib.adaptation is None
        assert lib.reset_adaptation() == (False, 0, [])


def test_adapt_per_camera(tmp_path, make_pipe, crops, adapt_crops):
    more = write_crops(tmp_path / "more", 20, start=300)
    with PersonLibrary(tmp_path / "db", pipeline=make_pipe()) as lib:
        lib.index_paths(crops[:3], camera="cam1", progress=False)
        lib.index_paths(crops[3:5], camera="cam2", progress=False)
        lib.adapt(adapt_crops, settings=FAST)
        s = lib.adapt(more, camera="cam1", settings=FEWER)
        assert s.camera == "cam1" and s.reembedded == 5
        a = Adaptation.load(tmp_path / "db")
        assert set(a.cameras) == {"*", "cam1"} and a.id == lib.adaptation.id
        everywhere, cam1 = a.cameras["*"], a.cameras["cam1"]
        assert not np.allclose(everywhere.thresholds, cam1.thresholds, atol=1e-5)
        pipe = lib.pipeline
        lib.index_paths(crops[5:], camera="cam1", progress=False)
        np.testing.assert_allclose(pipe.predictor.thresholds, cam1.thresholds, atol=1e-6)
        now = _bn(pipe)
        assert set(now) == set(cam1.bn) and all(np.allclose(now[k], cam1.bn[k]) for k in now)
        lib.index_paths([more[0]], camera="cam2", progress=False)
        np.testing.assert_allclose(pipe.predictor.thresholds, everywhere.thresholds, atol=1e-6)
        pipe.use_camera("cam1")
        np.testing.assert_allclose(pipe.predictor.thresholds, cam1.thresholds, atol=1e-6)
        pipe.use_camera(None)
        np.testing.assert_allclose(pipe.predictor.thresholds, everywhere.thresholds, atol=1e-6)
        with pytest.raises(AdaptationError, match="not a camera name"):
            lib.adapt(more, camera="*")


def test_bad_input_changes_nothing(tmp_path, make_pipe, crops, adapt_crops):
    junk = []
    for i in range(60):
        junk.append(tmp_path / f"junk{i}.jpg")
        junk[-1].write_bytes(b"not an image")
    db = tmp_path / "db"
    with PersonLibrary(db, pipeline=make_pipe()) as lib:
        lib.index_paths(crops, progress=False)
        mv0 = lib.model_version
        before = sorted((r.id, r.model_version, tuple(r.present)) for r in lib.store.iterate())
        for paths, why in (([], "no crops"), (adapt_crops[:10], "at least 50"),
                           (junk, "got 0 of 60 .60 unreadable")):
            with pytest.raises(AdaptationError, match=why):
                lib.adapt(paths, settings=FAST)
            assert _files(db) == [False, False]
            assert lib.model_version == mv0 and lib.adaptation is None
            assert sorted((r.id, r.model_version, tuple(r.present)) for r in lib.store.iterate()) == before


def test_adaptation_for_another_model_is_refused_then_replaced(tmp_path, make_pipe, crops, adapt_crops):
    db = tmp_path / "db"
    pipe = make_pipe()
    with PersonLibrary(db, pipeline=pipe) as lib:
        lib.index_paths(crops, progress=False)
        mv0 = lib.model_version
    n = len(pipe.names)
    Adaptation(model=pipe.predictor.fingerprint, names=list(pipe.names), cameras={
        "cam9": CameraAdaptation(50, np.full(n, 0.3, np.float32), np.full(n, 0.5, np.float32))}).save(db)
    with PersonLibrary(db, pipeline=make_pipe()) as lib:         # as fitted: applied
        assert lib.model_version != mv0 and set(lib.adaptation.cameras) == {"cam9"}
    raw = json.loads((db / ADAPTATION_FILE).read_text())
    raw["model"] = "0123456789abcdef"
    (db / ADAPTATION_FILE).write_text(json.dumps(raw))
    other = make_pipe()
    with PersonLibrary(db, pipeline=other) as lib:
        with pytest.raises(AdaptationError, match="another attribute model"):
            lib.pipeline
        with pytest.raises(AdaptationError):
            lib.index_paths(crops, progress=False)
        assert other.adaptation is None and other.model_version == mv0
        np.testing.assert_array_equal(other.predictor.thresholds, other.predictor.base_thresholds)
        s = lib.adapt(adapt_crops, settings=THRESHOLDS_ONLY)
        assert s.replaced and "another attribute model" in s.replaced
        assert s.reembedded == 6
        a = Adaptation.load(db)
        assert a.model == other.predictor.fingerprint and set(a.cameras) == {"*"}
        assert a.cameras["*"].bn is None and not (db / STATS_FILE).exists()
        assert lib.model_version != mv0 and lib.stale_count() == 0


def test_records_whose_file_is_gone_stay_stale(tmp_path, make_pipe, crops, adapt_crops):
    with PersonLibrary(tmp_path / "db", pipeline=make_pipe()) as lib:
        lib.index_paths(crops, progress=False)
        gone = crops[0].resolve()
        gone.unlink()
        s = lib.adapt(adapt_crops, settings=THRESHOLDS_ONLY)
        assert s.reembedded == 5
        assert [e.image for e in s.reembed_failed] == [str(gone)]
        assert lib.stale_count() == 1 and len(lib) == 5
        assert {r.path for r in lib.store.iterate() if r.model_version != lib.model_version} == {str(gone)}


def test_process_cameras_keeps_order_and_uses_each_cameras_adaptation(tmp_path, make_pipe, crops,
                                                                       adapt_crops):
    """The service's path: one batch of crops from several cameras."""
    from crops_testlib import crop_image

    images = [crop_image(i) for i in range(4)]
    cams = ["cam1", "cam2", "cam1", None]
    a, b, c, d = ids = [f"{i:064x}" for i in range(4)]
    pipe = make_pipe()
    plain = pipe.process_cameras(images, [f"s{i}" for i in range(4)], cams, ids=ids)
    assert [r.camera for r in plain] == cams and [r.id for r in plain] == ids
    with PersonLibrary(tmp_path / "db", pipeline=pipe) as lib:
        lib.adapt(adapt_crops, settings=FAST)
        lib.adapt(adapt_crops[:20], camera="cam1", settings=FEWER)
    seen = []
    real = pipe.process

    def spy(imgs, srcs, **kw):
        seen.append((kw.get("camera"), pipe.predictor.thresholds.copy(), list(kw["ids"])))
        return real(imgs, srcs, **kw)

    pipe.process = spy
    out = pipe.process_cameras(images, [f"s{i}" for i in range(4)], cams, ids=ids)
    assert [r.camera for r in out] == cams and [r.id for r in out] == ids
    by_cam = {cam: (th, got) for cam, th, got in seen}
    assert by_cam["cam1"][1] == [a, c] and by_cam["cam2"][1] == [b] and by_cam[None][1] == [d]
    ad = pipe.adaptation
    np.testing.assert_allclose(by_cam["cam1"][0], ad.cameras["cam1"].thresholds)
    np.testing.assert_allclose(by_cam["cam2"][0], ad.cameras["*"].thresholds)
    np.testing.assert_allclose(by_cam[None][0], ad.cameras["*"].thresholds)
