"""The command line's three entry points (``python -m personlens``, ``python -m personlens.cli``
and the ``personlens`` script) list every command, say the same, and reach every command."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ("attributes", "index", "search", "similar", "describe", "serve", "worker", "train",
            "eval", "calibrate", "info")
SCRIPT = Path(sys.executable).with_name("personlens")


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def module_help() -> str:
    r = _run(sys.executable, "-m", "personlens", "--help")
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_python_m_personlens_lists_every_command(module_help):
    assert module_help.startswith("Usage: personlens ")
    listed = module_help[module_help.index("Commands:"):].split()
    assert [c for c in COMMANDS if c not in listed] == []


def test_python_m_personlens_cli_says_the_same(module_help):
    r = _run(sys.executable, "-m", "personlens.cli", "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout == module_help


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the personlens script is not installed here")
def test_console_script_says_the_same(module_help):
    r = _run(str(SCRIPT), "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout == module_help


@pytest.mark.parametrize("entry", [("-m", "personlens"), ("-m", "personlens.cli")])
def test_serve_help(entry):
    r = _run(sys.executable, *entry, "serve", "--help")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("Usage: personlens serve ") and "--queue" in r.stdout


def test_command_modules_never_import_the_root_group():
    """personlens.cli registers the commands; its modules must not import it back (the old
    cli.py <-> cli_*.py cycle left `serve` unregistered under `python -m personlens.cli`)."""
    import grimp

    graph = grimp.build_graph("personlens", cache_dir=None)
    children = graph.find_children("personlens.cli")
    assert {"personlens.cli._common", "personlens.cli.serve"} <= children
    commands = children - {"personlens.cli.__main__"}  # `python -m personlens.cli` runs the root
    offenders = sorted(m for m in commands if "personlens.cli" in graph.find_modules_directly_imported_by(m))
    assert offenders == []
