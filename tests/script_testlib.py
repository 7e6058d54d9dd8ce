"""Loading a repository script (scripts/, benchmarks/) as a module, without running its main()."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(path: str | Path, name: str | None = None):
    """The module of ``path`` (relative to the repository or absolute); ``__name__`` is not
    ``"__main__"``, so its ``main()`` does not run."""
    path = REPO / path
    spec = importlib.util.spec_from_file_location(name or f"personlens_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
