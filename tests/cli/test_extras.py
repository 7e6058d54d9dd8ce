"""Install extras: the core commands run without any extra's package (each blocked in a fresh
interpreter), a command that needs one names the extra in one line, no module outside
``personlens.serve`` imports an extra's package at import time, and ``personlens.extras``
lists the same packages as pyproject.toml."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from cli_testlib import noise_image

from personlens.extras import EXTRAS, MissingExtra, missing_extra

ROOT = Path(__file__).parents[2]
SRC = ROOT / "src" / "personlens"
BLOCKED = sorted({m for mods in EXTRAS.values() for m in mods} | {"multipart", "httpx", "playwright"})

SCRIPT = """
import json, sys
for m in json.loads(sys.argv[1]):
    sys.modules[m] = None                      # `import m` (and m.sub) now raises ImportError
from click.testing import CliRunner
from personlens.cli import main
out = []
for args in json.loads(sys.argv[2]):
    r = CliRunner().invoke(main, args)
    out.append({"args": args, "code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr,
                "exception": repr(r.exception) if r.exit_code not in (0, 1, 2) else None})
print(json.dumps(out))
"""


def test_core_commands_run_without_extras_and_extras_are_named(tmp_path, par_model_dir):
    crop = tmp_path / "crop.png"
    noise_image(3).save(crop)
    runs = [
        ["attributes", str(crop), "--weights", str(par_model_dir), "--json"],
        ["index", str(crop), "--db", str(tmp_path / "db"), "--weights", str(par_model_dir),
         "--no-descriptions", "--no-progress"],
        ["search", "a man", "--db", str(tmp_path / "db"), "--json"],
        ["info", "--json"],
        ["attributes", "--help"], ["serve", "--help"], ["eval", "tracking", "--help"],
        ["serve", "--db", str(tmp_path / "db")],
        ["worker", "--queue", "redis://127.0.0.1:1/0", "--store", "postgresql://u@127.0.0.1:1/d"],
        ["eval", "tracking", "--video", str(crop), "--gt", str(crop)],
        ["eval", "describe", "--root", str(tmp_path), "--out", str(tmp_path / "r.json")],
    ]
    r = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(BLOCKED), json.dumps(runs)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    for x in res[:7]:                                   # the core commands, and --help everywhere
        assert x["code"] == 0, x
    attrs, index, search, info = (x["stdout"] for x in res[:4])
    rows = json.loads(attrs)
    assert rows[0]["image"] == str(crop) and rows[0]["attributes"]
    assert "1 added" in index
    assert [h["rank"] for h in json.loads(search)] == [1]
    assert json.loads(info)
    assert all("Usage:" in x["stdout"] for x in res[4:7])
    for x, extra in zip(res[7:], ("serve", "scale", "eval", "eval")):   # one line naming the extra
        assert x["code"] == 2 and x["exception"] is None, x
        assert re.fullmatch(rf"error: \w+ is not installed: pip install 'personlens\[{extra}\]'\n",
                            x["stderr"]), x


def test_missing_extra_maps_import_errors_to_their_extra():
    e = missing_extra(ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib.pyplot"))
    assert isinstance(e, MissingExtra) and e.extra == "eval"
    assert str(e) == "matplotlib is not installed: pip install 'personlens[eval]'"
    assert missing_extra(ModuleNotFoundError("x", name="starlette.responses")).extra == "serve"
    assert missing_extra(ModuleNotFoundError("x", name="psycopg")).extra == "scale"
    assert missing_extra(ModuleNotFoundError("x", name="numpy")) is None
    assert missing_extra(ImportError("no name")) is None


def _top_level_imports(tree: ast.Module):
    """Imports that run when the module is imported (not inside a function)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        stack.extend(ast.iter_child_nodes(node))


def test_no_module_outside_serve_imports_an_extra_at_import_time():
    extra_modules = {m for mods in EXTRAS.values() for m in mods} | {"multipart"}
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "serve":      # the serve package is the [serve] extra (imported lazily)
            continue
        for name in _top_level_imports(ast.parse(path.read_text(), str(path))):
            if name.split(".")[0] in extra_modules:
                bad.append(f"{rel}: import {name}")
    assert not bad, "import these inside the function that needs them:\n" + "\n".join(bad)


def test_extras_match_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def import_names(reqs):
        return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower().replace("-", "_") for r in reqs}

    for extra, modules in EXTRAS.items():
        assert import_names(extras[extra]) == set(modules) - {"starlette"}, extra   # starlette: fastapi's
    assert extras["all"] == ["personlens[serve,scale,eval]"]
    assert "personlens[serve,scale,eval]" in extras["test"]
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not import_names(core) & {m for mods in EXTRAS.values() for m in mods}
