"""scripts/person_masks.py without MediaPipe: the plausibility rule, mask sizes, and a run
that keeps plausible masks, records failures and resumes (a fake ``mediapipe`` module)."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from PIL import Image
from script_testlib import load_script

pm = load_script("scripts/person_masks.py")


def _person(h=100, w=40, top=5, bottom=95, x0=12, x1=28) -> np.ndarray:
    m = np.zeros((h, w), np.float32)
    m[top:bottom, x0:x1] = 1.0
    return m


def test_plausible_wants_one_whole_person():
    assert pm.plausible(_person())
    assert not pm.plausible(_person(top=5, bottom=40))            # a head and torso only
    assert not pm.plausible(np.zeros((100, 40), np.float32))      # nobody
    assert not pm.plausible(np.ones((100, 40), np.float32))       # everything
    assert not pm.plausible(_person(x0=19, x1=21))                # a sliver


class _FakePose:
    """Returns a centred person for wide-enough crops, nothing for the others; records sizes."""

    def __init__(self, **kwargs):
        self.sizes = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def process(self, rgb):
        h, w = rgb.shape[:2]
        self.sizes.append((w, h))
        if w < 60:
            return types.SimpleNamespace(segmentation_mask=None)
        m = np.zeros((h, w), np.float32)
        m[h // 20: h - h // 20, w // 3: 2 * w // 3] = 1.0
        return types.SimpleNamespace(segmentation_mask=m)


def test_segment_runs_at_256_high_and_returns_the_crops_size():
    pose = _FakePose()
    m = pm.segment(Image.new("RGB", (50, 125)), pose)
    assert pose.sizes == [(102, 256)] and m.shape == (125, 50) and pm.plausible(m)
    assert pm.segment(Image.new("RGB", (20, 125)), pose) is None


def test_main_keeps_plausible_masks_records_failures_and_resumes(tmp_path, monkeypatch):
    images, out = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    Image.new("RGB", (50, 125)).save(images / "00001.png")
    Image.new("RGB", (20, 125)).save(images / "00002.jpg")     # too narrow: the fake finds nobody
    (images / "00003.png").write_bytes(b"not an image")
    (images / "notes.txt").write_text("skipped")
    calls = []

    class Pose(_FakePose):
        def process(self, rgb):
            calls.append(rgb.shape)
            return super().process(rgb)

    fake = types.ModuleType("mediapipe")
    fake.solutions = types.SimpleNamespace(pose=types.SimpleNamespace(Pose=Pose))
    monkeypatch.setitem(sys.modules, "mediapipe", fake)
    assert pm.main(["--images", str(images), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["00001.png"]
    assert not list(out.glob("*.part"))                          # saved whole, then renamed
    assert Image.open(out / "00001.png").size == (50, 125)
    assert sorted((out / "failed.txt").read_text().split()) == ["00002", "00003"]
    assert json.loads((out / "summary.json").read_text())["masks"] == 1
    n = len(calls)
    assert pm.main(["--images", str(images), "--out", str(out)]) == 0
    assert len(calls) == n                                       # resumed: nothing segmented again


class _RoomPose(_FakePose):
    """Segments the bright pixels, but finds nobody when they fill more than 70 % of the
    image's height: like BlazePose's detector, it needs room around a person."""

    def process(self, rgb):
        h, w = rgb.shape[:2]
        self.sizes.append((w, h))
        m = (rgb.mean(axis=2) > 128).astype(np.float32)
        rows = np.flatnonzero(m.any(axis=1))
        if len(rows) == 0 or (rows[-1] - rows[0] + 1) > 0.7 * h:
            return types.SimpleNamespace(segmentation_mask=None)
        return types.SimpleNamespace(segmentation_mask=m)


def _tight_crop(h=125, w=50) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[4:h - 4, 15:35] = 255                     # a person from head to feet, background dark
    return Image.fromarray(a)


def test_padded_segment_finds_the_person_a_tight_crop_hides_and_maps_it_back():
    pose = _RoomPose()
    crop = _tight_crop()
    assert pm.segment(crop, pose) is None                         # no room: nobody found
    m = pm.segment(crop, pose, pad=0.5)
    assert pose.sizes[-1][1] == pm.PAD_SEG_HEIGHT
    assert pose.sizes[-1][0] == pytest.approx(pm.PAD_SEG_HEIGHT, abs=2)   # a square canvas
    truth = np.asarray(crop.convert("L")) > 128
    assert m.shape == truth.shape and pm.plausible(m)
    iou = ((m > 0.5) & truth).sum() / ((m > 0.5) | truth).sum()
    assert iou > 0.9                                              # the crop's own pixels


def test_pad_completes_a_folder_made_without_it_and_resumes(tmp_path, monkeypatch):
    images, out = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    _tight_crop().save(images / "00001.png")                      # found only when padded
    Image.new("RGB", (50, 125)).save(images / "00002.png")         # nobody, either way
    calls = []

    class Pose(_RoomPose):
        def process(self, rgb):
            calls.append(rgb.shape[0])
            return super().process(rgb)

    fake = types.ModuleType("mediapipe")
    fake.solutions = types.SimpleNamespace(pose=types.SimpleNamespace(Pose=Pose))
    monkeypatch.setitem(sys.modules, "mediapipe", fake)
    assert pm.main(["--images", str(images), "--out", str(out)]) == 0
    assert not list(out.glob("*.png")) and len(calls) == 2
    assert sorted((out / "failed.txt").read_text().split()) == ["00001", "00002"]

    calls.clear()
    assert pm.main(["--images", str(images), "--out", str(out), "--pad", "0.5"]) == 0
    assert calls == [pm.PAD_SEG_HEIGHT, pm.PAD_SEG_HEIGHT]        # only the padded try ran
    assert sorted(p.name for p in out.glob("*.png")) == ["00001.png"]
    assert (out / "failed-pad0.5.txt").read_text().split() == ["00002"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["masks"] == 1 and summary["pad"] == 0.5

    calls.clear()
    assert pm.main(["--images", str(images), "--out", str(out), "--pad", "0.5"]) == 0
    assert calls == []                                            # resumed: nothing again


@pytest.mark.parametrize("bad", [["--pad", "-1"], ["--identities", "no-such.csv"]])
def test_bad_options_are_usage_errors_before_any_work(tmp_path, bad):
    with pytest.raises(SystemExit) as e:
        pm.main(["--images", str(tmp_path), "--out", str(tmp_path / "m"), *bad])
    assert e.value.code == 2 and not (tmp_path / "m").exists()


def test_summary_counts_the_share_of_masked_crops_per_sub_dataset(tmp_path):
    out = tmp_path / "masks"
    out.mkdir()
    ids = tmp_path / "identities.csv"
    ids.write_text("index,file,subset\n1,00001.png,GRID\n2,00002.jpg,GRID\n3,00003.png,CUHK\n"
                   "4,00004.png,CUHK\n")
    Image.new("L", (4, 8)).save(out / "00001.png")
    Image.new("L", (4, 8)).save(out / "00003.png")
    shares = pm.share_by_subset(ids, {"00001", "00002", "00003"}, out)   # 00004 not in the run
    assert shares == {"CUHK": 1.0, "GRID": 0.5}
