"""Smoke runs of benchmarks/bench_service.py and fault_service.py on the fake pipeline (tiny)."""
from __future__ import annotations

from script_testlib import load_script
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    return load_script(BENCH / f"{name}.py", name)


def test_bench_service_smoke(tmp_path):
    out = tmp_path / "bench.json"
    rc = _load("bench_service").main(["--fake", "--clients", "2", "--requests", "2",
                                      "--max-wait-ms", "5", "--json", str(out)])
    data = json.loads(out.read_text())
    assert rc == 0 and data["service"]["status"] == {"200": 4}
    assert data["service"]["crops"] == 4 and data["service"]["latency"]["p99_ms"] > 0
    assert data["server_exit_code"] == 0


def test_fault_service_smoke(tmp_path):
    out = tmp_path / "fault.json"
    rc = _load("fault_service").main(["--fake", "--only", "malformed", "soak", "--repeat", "1",
                                      "--soak-requests", "10", "--json", str(out)])
    res = json.loads(out.read_text())["results"]
    assert rc == 0 and res["malformed"]["ok"] and res["malformed"]["records_added"] == 0
    assert res["soak"]["requests"] == 10 and res["shared_server_exit_code"] == 0
