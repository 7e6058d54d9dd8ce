"""Shared fixtures for the CLI tests: images and a fake PETA root (``par_model_dir``: tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cli_testlib import (FIXTURE_ATTRIBUTES, huge_png, image_bytes, make_runner, noise_image,
                         write_fake_peta)


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


@pytest.fixture()
def shared_pipeline(monkeypatch, pipeline, par_model_dir):
    """Every command in a test reuses the session's loaded models (loading takes seconds)."""
    import personlens.inference.pipeline as mod

    real = mod.PersonPipeline
    fixture_dir = str(Path(par_model_dir).resolve())

    def factory(par_dir=None, search_head=None, reid_head=None, **kw):
        default = (None, "default")  # heads not chosen: the shipped ones or (here) the baselines
        if par_dir == fixture_dir and search_head in default and reid_head in default:
            return pipeline
        return real(par_dir, search_head, reid_head, text_encoder=pipeline.text_encoder, **kw)

    monkeypatch.setattr(mod, "PersonPipeline", factory)
    return pipeline
