"""Shared by bench_service.py and fault_service.py: server/worker processes on 127.0.0.1,
synthetic crops, latency summaries. Loopback only; every loop is bounded in count and time."""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FAKE_LIB = ROOT / "tests" / "serve" / "serve_testlib.py"
TOKEN = "bench-token-0123456789"


def synthetic_crop(i: int, size=(128, 256), quality: int = 90) -> bytes:
    """A distinct JPEG person-crop-shaped image (smooth colour field + noise), ``size`` = (w, h)."""
    rng = np.random.default_rng(10_000 + i)
    coarse = Image.fromarray(rng.integers(0, 256, size=(8, 4, 3), dtype=np.uint8))
    arr = np.asarray(coarse.resize(size, Image.BICUBIC), np.int16)
    arr = np.clip(arr + rng.integers(-8, 9, size=arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(xs) -> dict:
    if not len(xs):
        return {"n": 0}
    a = np.asarray(xs) * 1000.0
    return {"n": int(len(a)), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p90_ms": round(float(np.percentile(a, 90)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def stop_process(proc: subprocess.Popen, log, kill: bool = False) -> None:
    """SIGTERM (SIGKILL with ``kill``) a child still running, SIGKILL it after 30 s, close its log."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    log.close()


class ServerProcess:
    """``personlens serve`` (real pipeline) or the test server on the fake pipeline (``fake``)."""

    def __init__(self, *, fake: bool, db: Path | None = None, weights: str | None = None,
                 queue_size: int = 256, max_batch: int = 32, max_wait_ms: float = 50,
                 delay: float = 0.0, queue_url: str | None = None, store_url: str | None = None,
                 schema: str = "public", stream: str = "personlens:crops", extra=(),
                 start_timeout: float = 180.0):
        self.db = Path(db or tempfile.mkdtemp(prefix="personlens-bench-"))
        env = {**os.environ, "PERSONLENS_TOKEN": TOKEN}
        self.log = open(self.db.parent / f"{self.db.name}.server.log", "w")
        common = []
        if queue_url:
            common += ["--queue", queue_url, "--store", store_url]
        if fake:
            port_file = self.db.parent / f"{self.db.name}.port"
            port_file.unlink(missing_ok=True)
            cmd = [sys.executable, str(FAKE_LIB), "--db", str(self.db), "--port-file", str(port_file),
                   "--token", TOKEN, "--queue-size", str(queue_size), "--max-batch", str(max_batch),
                   "--max-wait-ms", str(max_wait_ms), "--delay", str(delay),
                   "--schema", schema, "--stream", stream, *common, *extra]
        else:
            self.port = free_port()
            cmd = [sys.executable, "-c", "from personlens.cli import main; main()", "serve",
                   "--db", str(self.db), "--port", str(self.port), "--queue-size", str(queue_size),
                   "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
                   "--log-level", "warning", "--store-schema", schema, "--stream", stream,
                   *common, *extra]
            if weights:
                cmd += ["--weights", str(weights)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        end = time.monotonic() + start_timeout
        if fake:
            while not port_file.exists():
                self._check(end)
                time.sleep(0.05)
            self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            self._check(end)
            time.sleep(0.1)

    def _check(self, end):
        if self.proc.poll() is not None or time.monotonic() > end:
            self.stop(kill=True)
            raise RuntimeError(f"server did not start; log: {self.log.name}")

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {TOKEN}"}

    @property
    def rss_mb(self) -> float | None:
        return rss_mb(self.proc.pid)

    def terminate(self, timeout: float = 60.0) -> int | None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(kill=True)
            return None

    def stop(self, kill: bool = False) -> None:
        stop_process(self.proc, self.log, kill)


class WorkerProcess:
    """A scale-out worker (``personlens worker`` or the fake-pipeline one)."""

    def __init__(self, *, fake: bool, queue_url: str, store_url: str, schema: str, stream: str,
                 name: str, weights: str | None = None, delay: float = 0.0, max_batch: int = 8,
                 claim_idle_s: float = 2.0, log_dir: Path | None = None):
        log_dir = Path(log_dir or tempfile.gettempdir())
        self.log = open(log_dir / f"worker-{name}.log", "w")
        if fake:
            cmd = [sys.executable, str(FAKE_LIB), "--worker", "--queue", queue_url, "--store", store_url,
                   "--schema", schema, "--stream", stream, "--delay", str(delay),
                   "--max-batch", str(max_batch), "--claim-idle-s", str(claim_idle_s)]
        else:
            cmd = [sys.executable, "-c", "from personlens.cli import main; main()", "worker",
                   "--queue", queue_url, "--store", store_url, "--store-schema", schema,
                   "--stream", stream, "--name", name, "--max-batch", str(max_batch),
                   "--claim-idle-s", str(claim_idle_s)]
            if weights:
                cmd += ["--weights", str(weights)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def environment() -> dict:
    import platform

    import torch

    from personlens import __version__

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"personlens": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "cpu": cpu, "cores": os.cpu_count()}
