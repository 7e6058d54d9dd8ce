"""Default heads: the shipped search / re-ID heads when present and made for the PAR encoder,
else the baselines; ``None``/"baseline" always the baseline."""
from __future__ import annotations

import warnings

import pytest
import torch

import personlens.models.hub as hub
from personlens.models.embedding import EmbeddingHead, EmbeddingHeadConfig, save_embedding_head
from personlens.inference.pipeline import PersonPipeline, resolve_head
from personlens.models.hub import encoder_fingerprint


def _head(tmp_path, name, fingerprint):
    torch.manual_seed(0)
    h = EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=1280, out_dim=16, pool="meanmax",
                                          notes={"encoder_fingerprint": fingerprint}))
    return save_embedding_head(h, tmp_path / name)


def test_shipped_lookup_and_package_globs():
    assert set(hub.DEFAULT_FOR_KIND) == {"attributes", "search", "reid", "describer"}
    for kind, name in hub.DEFAULT_FOR_KIND.items():
        d = hub.shipped_dir(name)
        assert hub.SHIPPED[name].kind == kind
        assert d.parent == hub.shipped_dir("par-peta").parent
        assert hub.shipped_default(kind) in (None, d)
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["personlens"]
    assert "weights/**/*.json" in globs and "weights/**/*.safetensors" in globs


def test_default_uses_a_matching_shipped_head(pipeline, par_model_dir, tmp_path, monkeypatch):
    model = pipeline.model
    good = _head(tmp_path, "good", encoder_fingerprint(model))
    other = _head(tmp_path, "other", "0" * 32)
    monkeypatch.setattr(hub, "shipped_default", lambda kind: good if kind == "reid" else None)
    head, src = resolve_head("default", "reid", model, shipped_par=False)
    assert isinstance(head, EmbeddingHead) and src == "shipped:good"
    assert resolve_head(None, "reid", model, False) == (None, "baseline")
    assert resolve_head("baseline", "reid", model, False) == (None, "baseline")
    p = PersonPipeline(par_model_dir, text_encoder=pipeline.text_encoder)   # heads: "default"
    assert p.reid_dim == 16 and p.search_head is None and "shipped:good" in p.describe()["reid"]
    assert p.model_version != pipeline.model_version
    # a shipped head made for another encoder is not used by default ...
    monkeypatch.setattr(hub, "shipped_default", lambda kind: other if kind == "reid" else None)
    assert resolve_head("default", "reid", model, shipped_par=False) == (None, "baseline")
    # ... and asking for it explicitly warns
    with pytest.warns(UserWarning, match="another image encoder"):
        head, _ = resolve_head(other, "reid", model, shipped_par=False)
    assert head is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_head(good, "reid", model, shipped_par=False)


def test_library_remembers_default_heads(tmp_path, pipeline):
    from personlens.library import PersonLibrary

    lib = PersonLibrary(tmp_path / "db", pipeline=pipeline)
    assert lib.models["search_head"] == "default" and lib.models["reid_head"] == "default"
    lib.close()
    lib = PersonLibrary(tmp_path / "db2", pipeline=pipeline, search_head="baseline",
                        reid_head=tmp_path / "r")
    assert lib.models["search_head"] == "baseline"
    assert lib.models["reid_head"] == str((tmp_path / "r").resolve())
    lib.close()
