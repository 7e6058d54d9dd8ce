"""Smoke test: benchmarks/bench_attributes.py runs end to end on a tiny setting."""
from __future__ import annotations

import json
from pathlib import Path

from script_testlib import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_attributes.py"


def test_bench_attributes_smoke(par_model_dir, tmp_path, capsys):
    bench = load_script(SCRIPT, "bench_attributes")
    out = tmp_path / "bench.json"
    rc = bench.main(["--weights", str(par_model_dir), "--n", "3", "--runs", "2", "--warmup", "1",
                     "--batch", "2", "--rounds", "1", "--threads", "1", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"bf16", "fp32"}
    for r in data["results"].values():
        assert r["batch1"]["median_ms"] > 0 and r["batch1"]["runs"] == 2
        assert r["batch_decoded"]["images_per_s"] > 0 and r["batch_decoded"]["images"] == 3
        assert r["batch_jpeg"]["images_per_s"] > 0
    assert data["results"]["fp32"]["max_abs_prob_diff_vs_bf16"] < 0.1
    assert data["meta"]["model"]["attributes"] == 4 and data["meta"]["threads"] == 1
    assert "batch 1 ms/img" in capsys.readouterr().out
