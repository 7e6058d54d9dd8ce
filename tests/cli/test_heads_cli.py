"""``personlens train search|reid`` and ``personlens eval search|reid`` on tiny generated data."""
from __future__ import annotations

import json

import pytest
from cli_testlib import make_runner
from heads_testlib import fake_cuhk03, fake_peta

from personlens.cli import main
from personlens.models.embedding import load_embedding_head


@pytest.fixture()
def quick_text(monkeypatch, pipeline):
    """Commands reuse the session's MiniLM instead of loading it again."""
    import personlens.models.factory as factory

    monkeypatch.setattr(factory, "create_text_encoder", lambda *a, **k: pipeline.text_encoder)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return fake_peta(d / "peta"), fake_cuhk03(d / "cuhk")


def _run(*args):
    r = make_runner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r


def test_train_and_eval_search(roots, par_model_dir, quick_text, tmp_path):
    peta, _ = roots
    out, cache = tmp_path / "search-head", tmp_path / "cache"
    r = _run("train", "search", "--root", peta, "--par", par_model_dir, "--out", out, "--epochs", 2,
             "--captions-per-image", 2, "--batch-size", 4, "--cache", cache, "--no-progress")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout[r.stdout.index("{"):])["best_epoch"] in (1, 2)
    head = load_embedding_head(out, kind="search")
    notes = head.config.notes
    assert head.config.query_proj and head.config.text_encoder == "minilm" and head.config.pool == "meanmax"
    assert notes["encoder_fingerprint"] and "PETA partition 0 train" in notes["trained_on"]
    assert json.loads((out / "training.json").read_text())["num_train"] == 8
    js = tmp_path / "eval" / "search.json"
    r = _run("eval", "search", "--dataset", "peta", "--root", peta, "--par", par_model_dir,
             "--search-head", out, "--out", js, "--cache", cache, "--no-progress")
    assert r.exit_code == 0, r.output
    data = json.loads(js.read_text())
    assert set(data["methods"]) == {"learned", "baseline"} and js.with_suffix(".png").exists()
    assert "learned" in r.stdout and "baseline" in r.stdout


def test_train_and_eval_reid(roots, par_model_dir, tmp_path):
    _, cuhk = roots
    out, cache = tmp_path / "reid-head", tmp_path / "cache"
    r = _run("train", "reid", "--cuhk03-root", cuhk, "--par", par_model_dir, "--out", out,
             "--epochs", 2, "--p", 2, "--k", 2, "--hidden", 16, "--out-dim", 8, "--cache", cache,
             "--no-progress")
    assert r.exit_code == 0, r.output
    head = load_embedding_head(out, kind="reid")
    assert head.config.out_dim == 8 and head.config.notes["validation"].startswith("CUHK03")
    summary = json.loads((out / "training.json").read_text())
    assert summary["num_ids"] == 4 and summary["feature"] in ("pre_bn", "bnneck")
    js = tmp_path / "cuhk.json"
    r = _run("eval", "reid", "--dataset", "cuhk03-subset", "--root", cuhk, "--par", par_model_dir,
             "--reid-head", out, "--out", js, "--cache", cache, "--no-progress")
    assert r.exit_code == 0, r.output
    data = json.loads(js.read_text())
    base = {"learned", "imagenet_baseline", "par_encoder_baseline"}
    assert set(data["methods"]) == base | {m + "+camera" for m in base}
    assert data["methods"]["learned"]["num_queries"] == 6 and js.with_suffix(".png").exists()
    r = _run("eval", "reid", "--dataset", "cuhk03-subset", "--root", cuhk, "--par", par_model_dir,
             "--reid-head", out, "--out", js, "--cache", cache, "--no-progress",
             "--no-camera-centring")
    assert r.exit_code == 0, r.output
    data = json.loads(js.read_text())
    assert set(data["methods"]) == base and data["camera_centring"] is None


def test_usage_errors(roots, par_model_dir, tmp_path):
    r = _run("train", "reid", "--par", par_model_dir, "--out", tmp_path / "x")
    assert r.exit_code == 2 and "--root" in r.output
    # PETA without the four training sub-datasets: a one-line error, no traceback
    r = _run("train", "reid", "--root", roots[0], "--par", par_model_dir, "--out", tmp_path / "x",
             "--cache", tmp_path / "c", "--no-progress")
    assert r.exit_code == 2 and "error:" in r.stderr and "TownCentre" in r.stderr
    r = _run("eval", "reid", "--dataset", "market", "--root", roots[0], "--out", tmp_path / "m.json")
    assert r.exit_code == 2
