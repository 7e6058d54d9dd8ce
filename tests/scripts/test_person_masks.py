"""scripts/person_masks.py without MediaPipe: the plausibility rule, mask sizes, and a run
that keeps plausible masks, records failures and resumes (a fake ``mediapipe`` module)."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
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
    assert Image.open(out / "00001.png").size == (50, 125)
    assert sorted((out / "failed.txt").read_text().split()) == ["00002", "00003"]
    assert json.loads((out / "summary.json").read_text())["masks"] == 1
    n = len(calls)
    assert pm.main(["--images", str(images), "--out", str(out)]) == 0
    assert len(calls) == n                                       # resumed: nothing segmented again
