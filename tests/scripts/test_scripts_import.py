"""The experiment scripts import, and use only public personlens names (no ``_private`` ones)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from script_testlib import load_script

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "scripts").glob("*.py"))


def private_imports(source: str) -> list[str]:
    """``module.name`` of every ``_private`` module or name a source imports from personlens."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "personlens":
            parts = node.module.split(".")
            found += [f"{node.module}.{a.name}" for a in node.names
                      if a.name.startswith("_") or any(p.startswith("_") for p in parts)]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "personlens"
                      and any(p.startswith("_") for p in a.name.split("."))]
    return found


def test_there_are_scripts():
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_script_uses_only_public_personlens_names(path):
    assert private_imports(path.read_text()) == []


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_script_imports_without_running(path):
    module = load_script(path)            # __name__ is not "__main__": main() does not run
    assert callable(getattr(module, "main", None)) or module.__doc__


def test_the_check_catches_private_imports():
    src = ("from personlens.train.par import TrainConfig, _run\n"
           "import personlens._private.mod\n"
           "from personlens.cli._common import helper\n"
           "from os import _exit\nfrom . import _local\n")
    assert private_imports(src) == ["personlens.train.par._run", "personlens._private.mod",
                                    "personlens.cli._common.helper"]
