"""The model hub: shipped names, one save/load for every kind, the compatibility record."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from personlens.models import hub
from personlens.models.embedding import EmbeddingHead, EmbeddingHeadConfig, save_embedding_head
from personlens.models.io import load_model, load_par, set_thresholds


def _head(tmp_path, fingerprint=None, kind="reid"):
    torch.manual_seed(0)
    notes = {"encoder_fingerprint": fingerprint} if fingerprint else {}
    cfg = EmbeddingHeadConfig(kind=kind, in_dim=1280, out_dim=8, notes=notes,
                              text_encoder="minilm" if kind == "search" else None)
    return save_embedding_head(EmbeddingHead(cfg), tmp_path / kind)


def test_every_shipped_model_resolves_by_name_and_kind():
    for name, m in hub.SHIPPED.items():
        assert m.present, f"{name} is missing from the package"
        assert hub.resolve(name, m.kind) == m.path == hub.shipped_dir(name)
        assert hub.kind_of(m.path) == m.kind
    assert hub.resolve(None, "attributes") == hub.shipped_dir("par-peta")
    with pytest.raises(ValueError, match="is a reid model, not a attributes model"):
        hub.resolve("reid", "attributes")
    with pytest.raises(KeyError, match="no shipped model 'nope'"):
        hub.shipped("nope")


def test_a_directory_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="must hold config.json and model.safetensors"):
        hub.resolve(tmp_path, "reid")
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not valid JSON"):
        hub.read_config(tmp_path)


def test_save_weights_halves_only_large_tensors_and_leaves_no_temp_files(tmp_path):
    big, small = torch.randn(1 << 10, 1 << 10), torch.randn(3)
    d = hub.save_weights(tmp_path / "m", {"big": big, "small": small}, {"a": 1}, "reid",
                         half_min_values=1 << 20)
    from safetensors.torch import load_file

    raw = load_file(str(d / hub.WEIGHTS_FILE))
    assert raw["big"].dtype == torch.float16 and raw["small"].dtype == torch.float32
    cfg, state = hub.read_weights(d)
    assert cfg == {"a": 1} and state["big"].dtype == torch.float32
    assert sorted(p.name for p in d.iterdir()) == [hub.CONFIG_FILE, hub.WEIGHTS_FILE]
    assert hub.read_format(d) == hub.FORMATS["reid"]


def test_load_model_finds_the_kind_in_the_directory(tmp_path, par_model_dir):
    head = load_model(_head(tmp_path, kind="search"))
    assert isinstance(head, EmbeddingHead) and head.config.kind == "search"
    par = load_model(par_model_dir)
    assert par.config.attributes == load_par(par_model_dir).config.attributes
    with pytest.raises(ValueError, match="is a search head, expected a reid head"):
        load_model(tmp_path / "search", kind="reid")


def test_trained_on_checks_the_encoder_a_head_was_made_for(tmp_path, par_model_dir):
    par = load_par(par_model_dir)
    good = load_model(_head(tmp_path, hub.encoder_fingerprint(par)))
    assert hub.TrainedOn.of(good.config).fits(par_model=par) is True
    other = load_model(_head(tmp_path / "x", "0" * 32))
    assert hub.TrainedOn.of(other.config).fits(par_model=par) is False
    unknown = load_model(_head(tmp_path / "y"))
    assert not hub.TrainedOn.of(unknown.config).known
    assert hub.TrainedOn.of(unknown.config).fits(par_model=par) is None
    # describers record the PAR weights' SHA-256
    rec = hub.TrainedOn(par_sha256=hub.file_sha256(par_model_dir / hub.WEIGHTS_FILE))
    assert rec.fits(par_dir=par_model_dir) is True
    assert hub.TrainedOn(par_sha256="0" * 64).fits(par_dir=par_model_dir) is False


def test_set_thresholds_rewrites_only_the_config(tmp_path, par_model_dir):
    d = tmp_path / "par"
    shutil.copytree(par_model_dir, d)
    weights = (d / hub.WEIGHTS_FILE).read_bytes()
    n = len(load_par(d).config.attributes)
    set_thresholds(d, [0.25] * n, {"objective": "ma", "split": "val"})
    cfg = json.loads((d / hub.CONFIG_FILE).read_text())
    assert cfg["thresholds"] == [0.25] * n and cfg["notes"]["calibration"]["split"] == "val"
    assert (d / hub.WEIGHTS_FILE).read_bytes() == weights
    assert load_par(d).config.thresholds == [0.25] * n
    with pytest.raises(ValueError, match="thresholds for"):
        set_thresholds(d, [0.5], {})
