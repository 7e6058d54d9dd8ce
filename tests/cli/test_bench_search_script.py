"""Smoke test: benchmarks/bench_search.py runs end to end on a tiny setting."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_search.py"


def test_bench_search_smoke(par_model_dir, pipeline, tmp_path, capsys, monkeypatch):
    import personlens.inference.pipeline as mod

    monkeypatch.setattr(mod, "PersonPipeline", lambda *a, **k: pipeline)  # reuse the loaded models
    spec = importlib.util.spec_from_file_location("bench_search", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    rc = bench.main(["--sizes", "3000", "--dim", "64", "--queries", "30", "--nprobe", "2", "8",
                     "--ef-search", "16", "64", "--hnsw-m", "8", "--ef-construction", "40",
                     "--crops", "4", "--batch", "2", "--torch-threads", "1",
                     "--weights", str(par_model_dir), "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    rows = data["search"]
    assert {(r["kind"], r["filtered"]) for r in rows} == {(k, f) for k in ("flat", "ivf", "hnsw")
                                                          for f in (False, True)}
    for r in rows:
        assert r["n"] == 3000 and r["p99_ms"] >= r["p50_ms"] > 0 and 0 <= r["recall@10"] <= 1
    assert all(r["recall@10"] == 1.0 for r in rows if r["kind"] == "flat")
    assert max(r["recall@10"] for r in rows if r["kind"] != "flat") >= 0.9
    t = data["throughput"]
    assert t["crops"] == 4 and t["added"] == 4 and t["process_crops_per_s"] > 0
    assert t["index_paths_crops_per_s"] > 0
    assert data["meta"]["dim"] == 64 and "3000" in data["chosen"]
    assert "recall@10" in capsys.readouterr().out
