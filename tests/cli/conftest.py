"""Shared fixtures for the CLI tests: a small untrained PAR model, images, a fake PETA root."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cli_testlib import (FIXTURE_ATTRIBUTES, FIXTURE_THRESHOLDS, huge_png, image_bytes, make_runner,
                         noise_image, write_fake_peta)


@pytest.fixture(scope="session")
def par_model_dir(tmp_path_factory) -> Path:
    """A real (untrained) cross-attention PAR model saved with ``save_par``."""
    import torch

    from personlens.data.schema import PETA_SCHEMA
    from personlens.models.io import save_par
    from personlens.models.par import HeadConfig
    from personlens.train.par import TrainConfig, build_model

    torch.manual_seed(0)
    names = list(FIXTURE_ATTRIBUTES)
    model = build_model(TrainConfig(head=HeadConfig(kind="cross_attention")), names,
                        PETA_SCHEMA.subset(names))
    model.config.thresholds = list(FIXTURE_THRESHOLDS)
    return save_par(model, tmp_path_factory.mktemp("par-model"))


@pytest.fixture()
def good_images(tmp_path) -> list[Path]:
    """Two readable crops: one PNG, one JPEG."""
    a, b = tmp_path / "good_a.png", tmp_path / "good_b.jpg"
    noise_image(1).save(a)
    noise_image(2).save(b, quality=90)
    return [a, b]


@pytest.fixture()
def bad_images(tmp_path) -> dict[str, Path]:
    """One of each kind of unreadable input, keyed by the kind."""
    d = tmp_path / "bad"
    d.mkdir()
    png = image_bytes(noise_image(3), "PNG")
    jpg = image_bytes(noise_image(4), "JPEG")
    files = {
        "truncated_png": (d / "truncated.png", png[: len(png) // 2]),
        "truncated_jpeg": (d / "truncated.jpg", jpg[: len(jpg) // 2]),
        "text": (d / "notes.jpg", b"this is not an image, just text\n" * 4),
        "empty": (d / "empty.png", b""),
        "huge": (d / "huge.png", huge_png()),
    }
    out = {}
    for kind, (path, data) in files.items():
        path.write_bytes(data)
        out[kind] = path
    out["missing"] = d / "does_not_exist.jpg"
    return out


@pytest.fixture()
def runner() -> CliRunner:
    return make_runner()


@pytest.fixture(scope="session")
def fake_peta_root(tmp_path_factory) -> Path:
    """12 tiny images; every fixture attribute has positives and negatives in test."""
    from personlens.data.schema import PETA_ATTRIBUTE_NAMES

    n = 12
    labels = np.zeros((n, 105), np.float64)
    for j, name in enumerate(FIXTURE_ATTRIBUTES):
        col = list(PETA_ATTRIBUTE_NAMES).index(name)
        labels[:, col] = (np.arange(n) + j) % 2  # alternate 0/1, shifted per attribute
    split = {"train": list(range(1, 6)), "val": [6, 7], "test": list(range(8, 13))}
    return write_fake_peta(tmp_path_factory.mktemp("peta"), labels, split)
