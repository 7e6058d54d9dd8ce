"""Hardening of the command line (issue 14): unreadable files and folders named on the command
line or met inside a folder get one error line each (the rest is processed, exit 1), a library
the user cannot write can still be searched (nothing in it is written), and warnings print as
``warning: ...``.

Permissions are real (chmod) when the tests run as a normal user. Root reads everything, so
there the same refusals are simulated on those paths (``os.access`` / ``stat`` / ``open`` /
``scandir`` raise or answer as for a normal user), and the read-only library is also checked
for real in a subprocess without root's file-permission override (``setpriv``), when available.
``PERSONLENS_TEST_REAL_PERMISSIONS=1`` uses real permissions as root too (run pytest under
``setpriv --bounding-set=-dac_override,-dac_read_search --inh-caps=-dac_override,-dac_read_search``).
"""
from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_testlib import invoke, make_runner
from crops_testlib import write_crops

ROOT = os.geteuid() == 0 and os.environ.get("PERSONLENS_TEST_REAL_PERMISSIONS") != "1"
N = 4


@pytest.fixture()
def runner():
    return make_runner()



# ------------------------------------------------------------------ unreadable paths
def _abs(p) -> str | None:
    if isinstance(p, int):
        return None
    p = os.fsdecode(os.fspath(p))
    return os.path.abspath(p)


def _denied(path: str) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)


def _simulate(monkeypatch, no_read: set[Path], no_list: set[Path], no_enter: set[Path]) -> None:
    """As root: what a normal user meets for files without read permission (``no_read``),
    folders without any permission (``no_list``: chmod 000) and folders that cannot be entered
    (``no_enter``: no x bit)."""
    no_read = {str(p) for p in no_read}
    no_list = {str(p) for p in no_list}
    blocked = no_list | {str(p) for p in no_enter}      # what lies under these cannot be reached

    def unreachable(p: str) -> bool:
        return any(p.startswith(b + os.sep) for b in blocked)

    real_stat, real_access, real_scandir = os.stat, os.access, os.scandir
    real_listdir, real_open, real_os_open = os.listdir, builtins.open, os.open

    def stat(p, *a, **kw):
        q = _abs(p)
        if q is not None and unreachable(q):
            raise _denied(q)
        return real_stat(p, *a, **kw)

    def access(p, mode, *a, **kw):
        q = _abs(p)
        if q is not None and (unreachable(q) or (mode & os.R_OK and (q in no_read or q in no_list))):
            return False
        return real_access(p, mode, *a, **kw)

    def lister(real):
        def f(p=".", *a, **kw):
            q = _abs(p)
            if q is not None and (unreachable(q) or q in no_list):
                raise _denied(q)
            return real(p, *a, **kw)
        return f

    def opener(real):
        def f(p, *a, **kw):
            q = _abs(p)
            if q is not None and (unreachable(q) or q in no_read or q in no_list):
                raise _denied(q)
            return real(p, *a, **kw)
        return f

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "scandir", lister(real_scandir))
    monkeypatch.setattr(os, "listdir", lister(real_listdir))
    monkeypatch.setattr(os, "open", opener(real_os_open))
    monkeypatch.setattr(builtins, "open", opener(real_open))
    monkeypatch.setattr(io, "open", opener(real_open))


@pytest.fixture()
def unreadable(tmp_path, monkeypatch):
    """A good crop; a crop without read permission; a folder without permission; a crop in a
    folder that cannot be entered; a readable folder of 2 crops with an unreadable subfolder."""
    base = tmp_path / "perm"
    p = {"good": write_crops(base, 1, prefix="good")[0],
         "noread": write_crops(base, 1, start=1, prefix="noread")[0],
         "closed_dir": base / "closed", "inside_locked": base / "locked" / "crop003.png",
         "folder": base / "folder", "sub": base / "folder" / "sub", "missing": base / "missing.png"}
    write_crops(p["closed_dir"], 1, start=2)
    write_crops(p["inside_locked"].parent, 1, start=3)
    write_crops(p["folder"], 2, start=4)
    write_crops(p["sub"], 1, start=6)
    locked = p["inside_locked"].parent
    if ROOT:
        _simulate(monkeypatch, {p["noread"]}, {p["closed_dir"], p["sub"]}, {locked})
        yield p
        return
    modes = [(p["noread"], 0o000), (p["closed_dir"], 0o000), (locked, 0o600), (p["sub"], 0o000)]
    for path, mode in modes:
        os.chmod(path, mode)
    try:
        yield p
    finally:
        for path, _ in modes:
            os.chmod(path, 0o700)


BAD_ARGS = ("noread", "closed_dir", "inside_locked", "missing")


def _errors(r) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]


def _check_bad_args(r, p, shown_on_stdout: bool = True):
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "Usage:" not in r.stderr
    errors = _errors(r)
    for kind in BAD_ARGS:
        assert sum(str(p[kind]) in ln for ln in errors) == 1, (kind, errors)
    assert any(str(p["noread"]) in ln and "Permission denied" in ln for ln in errors), errors
    assert any(str(p["closed_dir"]) in ln and "Permission denied" in ln for ln in errors), errors
    if shown_on_stdout:
        assert str(p["good"]) in r.stdout


def test_attributes_reports_unreadable_files_and_processes_the_rest(runner, par_model_dir, unreadable):
    p = unreadable
    r = invoke(runner, "attributes", "--weights", par_model_dir, *[p[k] for k in BAD_ARGS], p["good"])
    _check_bad_args(r, p)
    assert _errors(r)[-1] == f"error: {len(BAD_ARGS)} of {len(BAD_ARGS) + 1} images could not be read"


def test_describe_reports_unreadable_files_and_processes_the_rest(runner, monkeypatch, unreadable):
    """(The describer is a stub that reads the files as the real one does.)"""
    from personlens.inference.batching import batched_over_paths
    from personlens.inference.describe import Description

    import personlens.cli.describe as describe_cli

    class Stub:
        def describe_paths(self, paths, batch_size=32):
            return batched_over_paths(paths, batch_size, lambda srcs, imgs: [
                Description(image=s, text="a person", attributes={}, present=[]) for s in srcs])

    monkeypatch.setattr(describe_cli, "_load_describer", lambda *a, **kw: Stub())
    p = unreadable
    r = invoke(runner, "describe", *[p[k] for k in BAD_ARGS], p["good"])
    _check_bad_args(r, p)


def test_index_and_similar_report_unreadable_files(runner, tmp_path, shared_pipeline, par_model_dir,
                                                   unreadable):
    p = unreadable
    db = tmp_path / "db"
    r = invoke(runner, "index", *[p[k] for k in BAD_ARGS], p["good"], "--db", db, "--weights",
               par_model_dir, "--no-progress")
    _check_bad_args(r, p, shown_on_stdout=False)
    assert f"1 added, 0 already indexed, 0 re-embedded, {len(BAD_ARGS)} failed" in r.stdout
    r = invoke(runner, "similar", *[p[k] for k in BAD_ARGS], p["good"], "--db", db, "--top-k", 1)
    _check_bad_args(r, p)


def test_unreadable_subfolder_is_reported_not_skipped(runner, tmp_path, shared_pipeline, par_model_dir,
                                                      unreadable):
    p = unreadable
    r = invoke(runner, "attributes", "--weights", par_model_dir, "--json", p["folder"])
    assert r.exit_code == 1, r.output
    assert [Path(x["image"]).name for x in json.loads(r.stdout)] == ["crop004.png", "crop005.png"]
    errors = _errors(r)
    assert len(errors) == 2 and str(p["sub"]) in errors[0] and "Permission denied" in errors[0]
    assert errors[1] == "error: 1 of 3 images could not be read"
    r = invoke(runner, "index", p["folder"], "--db", tmp_path / "db", "--weights", par_model_dir,
               "--no-progress")
    assert r.exit_code == 1, r.output
    assert "2 added, 0 already indexed, 0 re-embedded, 1 failed" in r.stdout
    assert any(str(p["sub"]) in ln for ln in _errors(r))


# ------------------------------------------------------------------ read-only library
@pytest.fixture()
def library(runner, tmp_path, shared_pipeline, par_model_dir) -> Path:
    db = tmp_path / "db"
    write_crops(tmp_path / "crops", N)
    r = invoke(runner, "index", tmp_path / "crops", "--db", db, "--weights", par_model_dir, "--no-progress")
    assert r.exit_code == 0, r.output
    return db


def _snapshot(db: Path) -> dict:
    return {f.name: f.read_bytes() for f in db.iterdir() if f.is_file()}


def test_reading_commands_never_write_the_library(runner, library, tmp_path):
    for f in library.glob("*.index"):      # out of step: rebuilt in memory, not saved
        f.unlink()
    before = _snapshot(library)
    q = min((tmp_path / "crops").glob("*.png"))
    for args in (["search", "a person", "--json"], ["similar", q, "--json"]):
        r = invoke(runner, *args, "--db", library)
        assert r.exit_code == 0, (args, r.output)
        assert json.loads(r.stdout)
        after = {k: v for k, v in _snapshot(library).items() if not k.endswith(("-wal", "-shm"))}
        assert after == before, (args, set(after) ^ set(before))


def test_library_opened_read_only_refuses_writes(library):
    from personlens.library import PersonLibrary
    from personlens.library.core import ReadOnlyLibraryError

    before = _snapshot(library)
    with PersonLibrary(library, read_only=True) as lib:
        assert len(lib) == N
        assert len(lib.search("a person", top_k=2)) == 2
        with pytest.raises(ReadOnlyLibraryError):
            lib.index_paths([], progress=False)
        with pytest.raises(ReadOnlyLibraryError):
            lib.delete(["x" * 64])
    assert {k: v for k, v in _snapshot(library).items() if not k.endswith(("-wal", "-shm"))} == before
    with pytest.raises(FileNotFoundError):
        PersonLibrary(library.parent / "nope", read_only=True)
    assert not (library.parent / "nope").exists()


def _make_read_only(db: Path) -> None:
    for f in db.rglob("*"):
        os.chmod(f, 0o555 if f.is_dir() else 0o444)
    os.chmod(db, 0o555)


def test_search_on_a_library_the_user_cannot_write(runner, library):
    """Real permissions: chmod a-w on the library. As a normal user in-process; as root in a
    subprocess without root's permission override."""
    _make_read_only(library)
    try:
        if not ROOT:
            r = invoke(runner, "search", "a person", "--db", library, "--json")
            assert r.exit_code == 0, r.output
            assert len(json.loads(r.stdout)) == N
            return
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop the permission override")
        caps = "-dac_override,-dac_read_search"
        code = ("import sys; import personlens.inference.pipeline as m; real = m.PersonPipeline; "
                # the fixture's models, as the shared_pipeline fixture gives them in-process
                "m.PersonPipeline = lambda par_dir=None, *a, **kw: real(par_dir, None, None); "
                "from personlens.cli import main; main(sys.argv[1:], prog_name='personlens')")
        res = subprocess.run([setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", "--",
                              sys.executable, "-c", code, "search", "a person", "--db", str(library),
                              "--json"], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        if "Operation not permitted" in res.stderr and res.returncode != 0 and "setpriv" in res.stderr:
            pytest.skip(f"setpriv cannot drop capabilities here: {res.stderr.strip()}")
        assert res.returncode == 0, res.stderr[-2000:]
        assert len(json.loads(res.stdout)) == N
    finally:
        for f in [library, *library.rglob("*")]:
            os.chmod(f, 0o700 if f.is_dir() else 0o600)


# ------------------------------------------------------------------ warnings
def test_warnings_print_as_warnings(capsys):
    from personlens.cli import _common

    class Lib:
        def stale_count(self):
            return 3

    _common._warn_stale(Lib())
    err = capsys.readouterr().err
    assert err.startswith("warning: 3 records were made by another model")
    src = Path(_common.__file__).parent
    for f in src.glob("*.py"):
        text = f.read_text()
        assert '_err(f"warning' not in text and '_err("warning' not in text, f.name
