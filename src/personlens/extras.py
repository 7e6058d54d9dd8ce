"""The optional parts of personlens and the packages each needs (``pip install 'personlens[NAME]'``).

The core install runs ``attributes``, ``index`` (crops and videos), ``search``, ``similar``,
``describe``, ``adapt``, ``info`` and training. The rest is opt-in, and every import of these
packages in ``personlens`` sits inside the function that needs it, so a missing one only
matters to the command that uses it:

* ``serve``: the HTTP API and search page (``personlens serve``);
* ``scale``: Redis queue and PostgreSQL store (``serve --queue/--store``, ``personlens worker``);
* ``eval``: evaluation reports (``personlens eval ...``: captioning metrics, tracking metrics, plots).

:func:`require` checks for an extra's packages up front and raises :class:`MissingExtra`, whose
message is one line naming the extra to install; :func:`missing_extra` turns an
``ImportError`` of one of these packages into the same.
"""
from __future__ import annotations

import importlib.util

# extra -> the import names of the packages it installs (pyproject.toml lists the distributions)
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "starlette", "uvicorn", "python_multipart", "prometheus_client",
              "fastapi_offline"),
    "scale": ("redis", "psycopg"),
    "eval": ("matplotlib", "pycocoevalcap", "motmetrics"),
}
_EXTRA_OF = {m: extra for extra, mods in EXTRAS.items() for m in mods} | {"multipart": "serve"}


class MissingExtra(ModuleNotFoundError):
    """A package of an optional extra is not installed; ``str()`` says what to install."""

    def __init__(self, extra: str, module: str):
        super().__init__(f"{module} is not installed: pip install 'personlens[{extra}]'", name=module)
        self.extra = extra


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(extra: str, *modules: str) -> None:
    """Raise :class:`MissingExtra` unless ``modules`` (default: all of the extra's) are installed."""
    for m in modules or EXTRAS[extra]:
        if not available(m):
            raise MissingExtra(extra, m)


def missing_extra(error: ImportError) -> MissingExtra | None:
    """The :class:`MissingExtra` behind ``error`` when it is about a package of an extra, else None."""
    if isinstance(error, MissingExtra):
        return error
    name = (getattr(error, "name", None) or "").split(".")[0]
    extra = _EXTRA_OF.get(name)
    return MissingExtra(extra, name) if extra else None
