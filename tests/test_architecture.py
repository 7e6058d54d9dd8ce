"""Imports run one way: the import-linter contracts in pyproject.toml hold, and they break
when a cycle or an upward import is introduced (checked on a copy of the package)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "personlens"


def _lint(src_root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the project's contracts on the package found under ``src_root``."""
    env = {**os.environ, "PYTHONPATH": str(src_root)}
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=src_root, timeout=300)


def test_contracts_hold():
    r = _lint(SRC.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "BROKEN" not in r.stdout and r.stdout.count("KEPT") == 3


@pytest.mark.parametrize("module, line, contract", [
    # a cycle inside a package (models.io imports models.hub)
    ("models/hub.py", "from . import io  # noqa", "No import cycles"),
    # inference code reaching into training code
    ("inference/pipeline.py", "from ..train import heads  # noqa", "Nothing that serves"),
    # a lower layer importing a higher one
    ("data/images.py", "from ..inference import records  # noqa", "Layers"),
])
def test_contracts_break_when_an_import_goes_the_wrong_way(tmp_path, module, line, contract):
    copy = tmp_path / "src" / "personlens"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("weights", "static", "__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}\n")
    r = _lint(copy.parent)
    assert r.returncode != 0
    broken = r.stdout[r.stdout.index("Broken contracts"):]
    assert contract in broken, r.stdout


def test_no_module_outside_train_eval_cli_imports_train():
    import grimp

    graph = grimp.build_graph("personlens", cache_dir=None)
    allowed = ("personlens.train", "personlens.eval", "personlens.cli")
    offenders = sorted(m for m in graph.modules
                       if not m.startswith(allowed)
                       and any(i.startswith("personlens.train")
                               for i in graph.find_modules_directly_imported_by(m)))
    assert offenders == []
