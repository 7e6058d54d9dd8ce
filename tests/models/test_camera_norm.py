"""``CameraCentring``: a per-camera offset is removed; small cameras fall back to the mean."""
from __future__ import annotations

import numpy as np
import pytest

from personlens.models.camera_norm import CameraCentring


def _two_camera_people(n=12, d=32, offset=3.0, seed=0):
    """Each person's identity vector, plus a strong offset shared by everyone in a camera."""
    rng = np.random.default_rng(seed)
    ident = rng.normal(size=(n, d))
    cam_offset = rng.normal(size=(2, d)) * offset
    feats = np.concatenate([ident + cam_offset[0] + 0.1 * rng.normal(size=(n, d)),
                            ident + cam_offset[1] + 0.1 * rng.normal(size=(n, d))])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    cams = np.repeat([1, 2], n)
    return feats.astype(np.float32), cams, n


def _cross_camera_rank1(f, n):
    sim = f[:n] @ f[n:].T
    return float((sim.argmax(1) == np.arange(n)).mean())


def test_centring_removes_camera_offset():
    f, cams, n = _two_camera_people()
    assert _cross_camera_rank1(f, n) < 0.5           # the camera offset dominates raw features
    cc = CameraCentring.fit(f, cams, min_images=5)
    g = cc.transform(f, cams)
    assert _cross_camera_rank1(g, n) == 1.0
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(g[cams == 1].mean(0) @ g[cams == 2].mean(0), 0.0, atol=0.05)
    assert cc.counts == {1: n, 2: n} and set(cc.camera_means) == {1, 2}


def test_small_or_unseen_camera_uses_global_mean():
    f, cams, n = _two_camera_people()
    cc = CameraCentring.fit(f, cams, min_images=n + 1)     # no camera has enough images
    assert cc.camera_means == {}
    expected = f - f.mean(0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(cc.transform(f, cams), expected, rtol=1e-5, atol=1e-6)
    cc = CameraCentring.fit(f, cams, min_images=5)
    np.testing.assert_allclose(cc.transform(f[:1], [7]), expected[:1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("feats, cams, match", [
    (np.zeros((0, 4)), [], "non-empty"),
    (np.ones((3, 4)), [1, 2], "3 features but 2 camera ids"),
])
def test_fit_rejects_bad_input(feats, cams, match):
    with pytest.raises(ValueError, match=match):
        CameraCentring.fit(feats, cams)


def test_transform_rejects_wrong_width_and_count():
    f, cams, _ = _two_camera_people()
    cc = CameraCentring.fit(f, cams)
    with pytest.raises(ValueError, match="width 8"):
        cc.transform(np.ones((2, 8)), [1, 2])
    with pytest.raises(ValueError, match="2 features but 1 camera ids"):
        cc.transform(f[:2], [1])
