"""SIGTERM drains a real server process: new requests get 503, in-flight ones are answered,
queued crops are stored, and the process exits 0."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from serve_testlib import auth, crop_png

LIB = Path(__file__).with_name("serve_testlib.py")
H = auth()


def start_server(tmp_path, *args):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(LIB), "--db", str(tmp_path / "db"),
                             "--port-file", str(port_file), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.monotonic() + 90
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise RuntimeError("server did not start:\n" + (proc.stdout.read() or ""))
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port_file.read_text()}"
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise RuntimeError("server not healthy:\n" + (proc.stdout.read() or ""))
        time.sleep(0.05)


def _post(url, i):
    return httpx.post(url + "/v1/persons", headers=H, timeout=30,
                      files=[("files", (f"{i}.png", crop_png(7000 + i), "image/png"))])


def _metric(url, name) -> float:
    for line in httpx.get(url + "/metrics", headers=H, timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def test_sigterm_drains_in_flight_requests_and_exits_cleanly(tmp_path):
    proc, url = start_server(tmp_path, "--delay", "0.4", "--max-batch", "1", "--max-wait-ms", "0")
    try:
        with ThreadPoolExecutor(4) as pool:
            inflight = [pool.submit(_post, url, i) for i in range(3)]
            end = time.monotonic() + 10
            while _metric(url, "personlens_queue_depth") < 2:   # 1 on the worker, 2 waiting
                assert time.monotonic() < end
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGTERM)
            end = time.monotonic() + 5
            while httpx.get(url + "/healthz", timeout=5).status_code != 503:
                assert time.monotonic() < end
                time.sleep(0.01)
            late = _post(url, 99)
            assert late.status_code == 503 and late.headers["retry-after"]
            assert [f.result().status_code for f in inflight] == [200, 200, 200]
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read()
    assert "Traceback" not in out, out
    with sqlite3.connect(tmp_path / "db" / "personlens.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 3
    assert (tmp_path / "db" / "search.index").exists()      # indexes saved on the way out


def test_sigterm_on_an_idle_server_exits_at_once(tmp_path):
    proc, url = start_server(tmp_path)
    try:
        assert _post(url, 1).status_code == 200
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
