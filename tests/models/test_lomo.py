"""The LOMO-style colour descriptor and its learned projection (personlens.models.lomo)."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest
from PIL import Image

from personlens.models.lomo import (LomoConfig, lomo_descriptor, lomo_descriptors,
                                    max_occurrence, rgb_to_hsv)
from personlens.train.lomo_fit import fit_lomo_projection


def person(top, bottom, size=(48, 128), shift=0, noise_seed=0) -> Image.Image:
    """A crop with a grey background and a 'person': a ``top`` torso over ``bottom`` legs."""
    w, h = size
    rng = np.random.default_rng(noise_seed)
    a = np.full((h, w, 3), 128.0) + rng.normal(0, 6, (h, w, 3))
    x0, x1 = w // 4 + shift, 3 * w // 4 + shift
    a[h // 8:h // 2, x0:x1] = top
    a[h // 2:7 * h // 8, x0:x1] = bottom
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def cos(a, b) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_default_descriptor_is_lomo_sized_unit_float32():
    cfg = LomoConfig()
    assert cfg.dim == (24 + 11 + 5) * 512
    d = lomo_descriptor(person((200, 30, 30), (30, 30, 160)))
    assert d.shape == (cfg.dim,) and d.dtype == np.float32
    assert np.isclose(np.linalg.norm(d), 1.0, atol=1e-5) and (d >= 0).all()


def test_any_size_or_mode_gives_the_same_length():
    for im in (person((0, 200, 0), (90, 90, 90), size=(20, 50)), Image.new("L", (300, 700), 80),
               person((0, 200, 0), (9, 9, 9)).convert("RGBA")):
        assert lomo_descriptor(im).shape == (LomoConfig().dim,)


def test_rgb_to_hsv_matches_colorsys():
    rgb = np.random.default_rng(0).random((50, 3))
    want = np.array([colorsys.rgb_to_hsv(*p) for p in rgb])
    np.testing.assert_allclose(rgb_to_hsv(rgb), want, atol=1e-6)


def test_max_occurrence_by_hand():
    # 4x6 map, 2x2 cells, windows of 2x2 cells: one row of windows (rows 0-3), two positions
    bins = np.zeros((4, 6), int)
    bins[:, 4:] = 1          # bin 1 only in the right-most cell column
    out = max_occurrence(bins, 2, window=4, stride=2)
    # left window (columns 0-3): 16 x bin 0; right window (columns 2-5): 8 x bin 0, 8 x bin 1
    np.testing.assert_array_equal(out, [[16, 8]])


def test_same_person_under_other_light_and_position_beats_another_person():
    a = person((200, 30, 30), (30, 30, 160))
    darker_moved = Image.fromarray((np.asarray(person((200, 30, 30), (30, 30, 160), shift=6,
                                                       noise_seed=1)) * 0.55).astype(np.uint8))
    other = person((30, 160, 30), (200, 200, 40), noise_seed=2)
    da, dd, do = (lomo_descriptor(x) for x in (a, darker_moved, other))
    assert cos(da, dd) > cos(da, do) + 0.1


def test_descriptors_of_images_and_paths_agree(tmp_path):
    ims = [person((200, 30, 30), (30, 30, 160)), person((30, 160, 30), (0, 0, 0))]
    paths = []
    for i, im in enumerate(ims):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    np.testing.assert_array_equal(lomo_descriptors(ims), lomo_descriptors(paths))
    assert lomo_descriptors([]).shape == (0, LomoConfig().dim)


def test_config_round_trip_and_validation():
    cfg = LomoConfig(retinex_sigmas=(3.0,))
    assert LomoConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="multiple"):
        LomoConfig(window=7, stride=5)
    with pytest.raises(ValueError, match="too small"):
        LomoConfig(height=30)


def test_projection_keeps_identity_and_drops_camera_colour_shifts():
    # 40 identities x 2 cameras; each camera adds a large shift along its own random
    # directions (light), identities differ along others, smaller
    rng = np.random.default_rng(0)
    n_ids, d = 40, 60
    ident = rng.normal(0, 1.0, (n_ids, d))
    cams = rng.normal(0, 4.0, (2, n_ids, d)) * (np.arange(d) < 20)   # per-image light change
    x = np.concatenate([ident + cams[c] + rng.normal(0, 0.2, (n_ids, d)) for c in (0, 1)])
    y = np.tile(np.arange(n_ids), 2)
    mean, proj = fit_lomo_projection(x, y, dim=10, pca_dim=50)
    assert mean.shape == (d,) and proj.shape == (d, 10)

    def rank1(f):
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        return float((np.argmax(f[:n_ids] @ f[n_ids:].T, 1) == np.arange(n_ids)).mean())

    assert rank1((x - mean) @ proj) > rank1(x - mean) + 0.3
    with pytest.raises(ValueError, match="identities"):
        fit_lomo_projection(x, y, dim=n_ids)


def test_siltp_codes_by_hand_and_under_a_change_of_light():
    from personlens.models.lomo import siltp_codes

    g = np.full((5, 5), 10.0)
    g[2, 4] = 20.0    # right neighbour of the centre (radius 2): brighter -> 1
    g[0, 2] = 5.0     # upper neighbour: darker -> 2
    code = siltp_codes(g, 2, 0.3)[2, 2]
    # neighbours in the order right, up, left, down: (1, 2, 0, 0) in base 3
    assert code == ((1 * 3 + 2) * 3 + 0) * 3 + 0
    rng = np.random.default_rng(0)
    img = rng.random((20, 12)) + 0.1
    np.testing.assert_array_equal(siltp_codes(img, 3, 0.3), siltp_codes(img * 0.4, 3, 0.3))


def test_texture_half_is_appended_and_reweighted_exactly():
    from personlens.models.lomo import reweight_texture

    im = person((200, 30, 30), (30, 30, 160))
    cfg = LomoConfig(texture_weight=0.5)
    assert cfg.dim == cfg.lomo_dim + cfg.rows * 81 * 2 and LomoConfig().texture_dim == 0
    d = lomo_descriptor(im, cfg)
    assert d.shape == (cfg.dim,) and np.isclose(np.linalg.norm(d), 1.0, atol=1e-5)
    # colour half: the colour-only descriptor, scaled
    np.testing.assert_allclose(d[:cfg.lomo_dim], np.sqrt(0.5) * lomo_descriptor(im), atol=1e-6)
    for w in (0.0, 0.3):
        want = lomo_descriptor(im, cfg.with_texture_weight(w))
        np.testing.assert_allclose(reweight_texture(d[None], cfg, w)[0], want, atol=1e-6)
    with pytest.raises(ValueError, match="texture"):
        reweight_texture(d[None, :LomoConfig().dim], LomoConfig(), 0.3)
    with pytest.raises(ValueError, match="texture_weight"):
        LomoConfig(texture_weight=1.0)
