"""PersonLibrary: camera / time metadata on indexing, camera and time filters on search,
similar and filter, the camera summary, and delete (records, index entries, owned files)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timezone

import numpy as np
import pytest
from crops_testlib import crop_image, write_crops
from PIL import Image

from personlens.library import INDEX_FILES, PersonLibrary, PersonNotFoundError
from personlens.library.results import exif_time, iso_time, parse_time, result_json
from personlens.library.video import VIDEO_DIR, video_done_key

N = 8
T0 = 1_700_000_000.0
# per crop: camera, timestamp (None: unknown)
META = [("a", T0), ("a", T0 + 10), ("b", T0 + 20), ("b", None), (None, T0 + 5), ("c", T0 + 30),
        ("a", None), (None, None)]


@pytest.fixture()
def crops(tmp_path):
    return write_crops(tmp_path / "crops", N)


@pytest.fixture()
def lib(tmp_path, pipeline, crops):
    lib = PersonLibrary(tmp_path / "db", pipeline=pipeline)
    s = lib.index_paths(crops, batch_size=3, progress=False,
                        metadata=[{"camera": c, "timestamp": t, "track_id": f"t{i}" if i == 2 else None}
                                  for i, (c, t) in enumerate(META)])
    assert s.added == N
    yield lib
    lib.close()


def _ids(lib, crops, keep):
    by_path = {r.path: r.id for r in lib.store.iterate()}
    return {by_path[str(p.resolve())] for p, m in zip(crops, META) if keep(*m)}


def test_index_keeps_camera_time_and_track_per_path(lib, crops, tmp_path, pipeline):
    recs = {r.path: r for r in lib.store.iterate()}
    for i, (p, (cam, t)) in enumerate(zip(crops, META)):
        r = recs[str(p.resolve())]
        assert (r.camera, r.timestamp) == (cam, t)
        assert r.track_id == ("t2" if i == 2 else None)
    # one camera and time for the whole run
    with PersonLibrary(tmp_path / "db2", pipeline=pipeline) as other:
        other.index_paths(crops[:2], progress=False, camera="gate", timestamp=T0)
        assert {(r.camera, r.timestamp) for r in other.store.iterate()} == {("gate", T0)}


def test_timestamps_from_mtime_and_exif(tmp_path, pipeline):
    d = tmp_path / "t"
    d.mkdir()
    with_exif, without = d / "exif.jpg", d / "plain.png"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2024:01:02 03:04:05"
    crop_image(0).save(with_exif, exif=exif.tobytes())
    crop_image(1).save(without)
    os.utime(without, (T0, T0))
    assert exif_time(with_exif.read_bytes()) == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()
    assert exif_time(without.read_bytes()) is None
    with PersonLibrary(tmp_path / "db-exif", pipeline=pipeline) as lib:
        lib.index_paths([with_exif, without], progress=False, timestamps_from="exif")
        got = {os.path.basename(r.path): r.timestamp for r in lib.store.iterate()}
        assert got == {"exif.jpg": 1704164645.0, "plain.png": None}      # no EXIF: no time
    with PersonLibrary(tmp_path / "db-mtime", pipeline=pipeline) as lib:
        lib.index_paths([without], progress=False, timestamps_from="mtime")
        assert [r.timestamp for r in lib.store.iterate()] == [T0]
        with pytest.raises(ValueError):
            lib.index_paths([without], progress=False, timestamps_from="ctime")


def test_search_filters_by_camera_and_time(lib, crops):
    def ids(**kw):
        return {h.record.id for h in lib.search("a person", top_k=50, **kw)}

    assert len(ids()) == N
    assert ids(cameras=["a"]) == _ids(lib, crops, lambda c, t: c == "a")
    assert ids(cameras=["a", "c"]) == _ids(lib, crops, lambda c, t: c in ("a", "c"))
    assert ids(cameras=["nope"]) == set()
    assert ids(after=T0 + 5) == _ids(lib, crops, lambda c, t: t is not None and t >= T0 + 5)
    assert ids(before=T0 + 10) == _ids(lib, crops, lambda c, t: t is not None and t < T0 + 10)
    assert ids(cameras=["a"], after=T0, before=T0 + 10) == _ids(lib, crops, lambda c, t: c == "a" and t == T0)
    # with attribute filters too
    men = {h.record.id for h in lib.search("a person", top_k=50, where={"personalMale": True})}
    assert ids(where={"personalMale": True}, cameras=["b"]) == men & _ids(lib, crops, lambda c, t: c == "b")


def test_search_offset_pages_through_the_ranking(lib):
    full = lib.search("a person", top_k=N)
    page = lib.search("a person", top_k=3, offset=2)
    # (the baseline search embedding ties crops with the same attributes: compare scores)
    assert [round(h.score, 5) for h in page] == [round(h.score, 5) for h in full[2:5]]
    assert not {h.record.id for h in page} & {h.record.id for h in lib.search("a person", top_k=2)
                                                if h.score > full[2].score + 1e-5}
    assert [h.rank for h in page] == [3, 4, 5]
    assert lib.search("a person", top_k=3, offset=N) == []


def test_filter_newest_first_with_paging_and_counts(lib, crops):
    everyone = lib.filter()
    assert [r.path for r in everyone] == [str(p.resolve()) for p in reversed(crops)]
    assert [r.id for r in lib.filter(limit=3, offset=2)] == [r.id for r in everyone[2:5]]
    a = lib.filter(cameras=["a"])
    assert {r.id for r in a} == _ids(lib, crops, lambda c, t: c == "a")
    assert lib.count_matching() == N
    assert lib.count_matching(None, ["a"], None, None) == len(a) == 3
    assert lib.count_matching(after=T0 + 10) == 3
    assert lib.count_matching({"accessoryHat": True}, ["a"]) == \
        len([r for r in a if "accessoryHat" in r.present])


def test_cameras_summary(lib):
    assert lib.cameras() == [{"name": "a", "count": 3, "first": T0, "last": T0 + 10},
                             {"name": "b", "count": 2, "first": T0 + 20, "last": T0 + 20},
                             {"name": "c", "count": 1, "first": T0 + 30, "last": T0 + 30}]


def test_similar_filters_and_similar_to_id(lib, crops):
    by_path = {r.path: r for r in lib.store.iterate()}
    q = by_path[str(crops[0].resolve())]                       # camera a
    hits = lib.similar_to_id(q.id, top_k=50)
    assert len(hits) == N - 1 and q.id not in {h.record.id for h in hits}
    raw = lib.similar(crops[0], top_k=50)
    assert [(h.record.id, round(h.score, 5)) for h in raw] == [(h.record.id, round(h.score, 5)) for h in hits]
    other = lib.similar_to_id(q.id, top_k=50, other_cameras=True)
    assert other and all(h.record.camera != "a" for h in other)
    assert {h.record.id for h in other} == {h.record.id for h in hits if h.record.camera != "a"}
    assert any(h.record.camera is None for h in other)           # no camera: not "its camera"
    only_b = lib.similar_to_id(q.id, top_k=50, cameras=["b"], after=T0)
    assert {h.record.camera for h in only_b} == {"b"} and len(only_b) == 1
    ex = lib.similar(crops[0], top_k=50, exclude_cameras=["a", "b"])
    assert {h.record.camera for h in ex} == {"c", None}
    with pytest.raises(PersonNotFoundError, match="no person"):
        lib.similar_to_id("0" * 64)


def _owned_upload(lib, crop_path):
    """The crop copied into the library's uploads/ (as the service stores uploads)."""
    data = crop_path.read_bytes()
    cid = hashlib.sha256(data).hexdigest()
    dest = lib.db_dir / "uploads" / cid[:2] / f"{cid}.png"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return cid, dest


def _fake_track(lib, pipeline, n_crops=2):
    """A video track record with its crops and track file under DB/video, as ``index VIDEO``
    writes them, and the video's "indexed" marker."""
    digest = "ab" * 32
    folder = lib.db_dir / VIDEO_DIR / digest[:16]
    folder.mkdir(parents=True)
    names = []
    for k in range(1, n_crops + 1):
        crop_image(40 + k).save(folder / f"track-0001-{k}.jpg")
        names.append(f"track-0001-{k}.jpg")
    settings = "ssdlite|every=1"
    (folder / "track-0001.json").write_text(json.dumps({
        "video": "/videos/gate.mp4", "video_sha256": digest, "settings": settings, "start": T0,
        "end": T0 + 2, "frames": 30, "crop_files": names, "uncertain": ["accessoryHat"]}))
    rid = hashlib.sha256(b"track-1").hexdigest()
    rec = pipeline.process([crop_image(41)], [str((folder / names[0]).resolve())], ids=[rid],
                           timestamps=[T0], track_ids=[f"{digest[:16]}/1"])[0]
    lib.add_records([rec])
    key = video_done_key(digest, settings)
    lib.store.set_meta(key, {"model_version": lib.model_version, "tracks": 1})
    return rec, folder, key


def test_delete_removes_records_index_entries_and_owned_files(lib, crops, pipeline, tmp_path):
    n0 = len(lib)
    cid, upload = _owned_upload(lib, write_crops(tmp_path / "more", 1, start=20)[0])
    lib.index_paths([upload], progress=False)
    track, folder, key = _fake_track(lib, pipeline)
    d = result_json(track)
    assert d["track"] == {"video": "/videos/gate.mp4", "start": T0, "end": T0 + 2, "frames": 30,
                          "uncertain": ["accessoryHat"]}
    assert d["timestamp_iso"] == iso_time(T0) == "2023-11-14T22:13:20Z"
    assert result_json(track, root=lib.db_dir)["path"] == f"video/{folder.name}/track-0001-1.jpg"
    assert result_json(track, root=lib.db_dir)["track"]["video"] == "gate.mp4"
    user_crop = next(r for r in lib.store.iterate() if r.path == str(crops[0].resolve()))
    assert len(lib) == n0 + 2

    assert lib.delete([cid, track.id, user_crop.id, "0" * 64]) == 3
    assert len(lib) == n0 - 1
    assert not upload.exists() and not upload.parent.exists()            # the upload copy
    assert not folder.exists()                                          # crops + track file
    assert crops[0].exists()                                            # the user's own file
    assert lib.store.get_meta(key) is None                              # the video may come back
    for kind in INDEX_FILES:
        idx = lib.index(kind)
        assert len(idx) == len(lib) and not {cid, track.id, user_crop.id} & set(idx.ids())
    assert {cid, track.id, user_crop.id}.isdisjoint(h.record.id for h in lib.search("a person", top_k=50))
    ids_before = sorted(lib.index("reid").ids())
    assert sorted(lib.rebuild_index("reid").ids()) == ids_before        # rebuild agrees


def test_delete_keeps_files_in_use_and_never_touches_outside(lib, pipeline, tmp_path):
    outside = tmp_path / "outside.png"
    crop_image(30).save(outside)
    lib.index_paths([outside], progress=False)
    shared = lib.db_dir / "uploads" / "zz" / "shared.png"
    shared.parent.mkdir(parents=True)
    crop_image(31).save(shared)
    a, b = (pipeline.process([crop_image(31)], [str(shared.resolve())], ids=[hashlib.sha256(s).hexdigest()])[0]
            for s in (b"a", b"b"))
    lib.add_records([a, b])                                  # two records, one file
    out_rec = next(r for r in lib.store.iterate() if r.path == str(outside.resolve()))
    lib.delete([a.id, out_rec.id])
    assert shared.exists() and outside.exists()
    lib.delete([b.id])
    assert not shared.exists()
    link = lib.db_dir / "uploads" / "yy" / "link.png"         # a link out of the library
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    c = pipeline.process([crop_image(30)], [str(link)], ids=[hashlib.sha256(b"c").hexdigest()])[0]
    lib.add_records([c])
    lib.delete([c.id])
    assert outside.exists()


def test_parse_time():
    assert parse_time("2024-01-02T03:04:05Z") == 1704164645.0
    assert parse_time("2024-01-02T03:04:05") == 1704164645.0           # no zone: UTC
    assert parse_time("2024-01-02T04:04:05+01:00") == 1704164645.0
    assert parse_time("2024-01-02") == 1704153600.0
    assert parse_time("1704164645.5") == parse_time(1704164645.5) == 1704164645.5
    assert parse_time(None) is None and parse_time(" ") is None
    for bad in ("yesterday", "nan", "inf", True, [1]):
        with pytest.raises(ValueError):
            parse_time(bad, "after")
    with pytest.raises(ValueError, match="after '1704164645'"):
        parse_time("1704164645", "after", allow_epoch=False)
    assert iso_time(1704164645.5) == "2024-01-02T03:04:05.500000Z" and iso_time(None) is None


def test_reembedding_keeps_the_stored_camera_and_time(tmp_path, pipeline, par_model_dir, crops):
    from personlens.inference.pipeline import PersonPipeline
    from personlens.models.embedding import EmbeddingHead, EmbeddingHeadConfig, save_embedding_head

    with PersonLibrary(tmp_path / "db3", pipeline=pipeline) as lib:
        lib.index_paths(crops[:2], progress=False, camera="a", timestamp=T0)
    head = save_embedding_head(EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=1280, out_dim=16)),
                               tmp_path / "reid-head")
    other = PersonPipeline(par_model_dir, reid_head=head, text_encoder=pipeline.text_encoder)
    with PersonLibrary(tmp_path / "db3", pipeline=other) as lib:
        s = lib.index_paths(crops[:2], progress=False)
        assert s.reembedded == 2
        assert {(r.camera, r.timestamp, r.model_version) for r in lib.store.iterate()} == \
            {("a", T0, other.model_version)}
        assert np.isfinite(lib.search("a person", top_k=1)[0].score)
    shutil.rmtree(tmp_path / "db3")
