"""personlens: understand people in camera footage, locally.

The public Python API (imported lazily, so ``import personlens`` stays cheap)::

    >>> import personlens
    >>> sorted(personlens.SHIPPED)           # the models that ship inside the package
    ['describe-peta', 'par-peta', 'reid', 'search-peta']

* :class:`PersonLibrary`: a folder of crops made searchable by sentence, attributes and example
  (``personlens.library``).
* :class:`PersonPipeline`: one encoder pass per batch -> attributes, search and re-ID
  embeddings and a description (``personlens.inference.pipeline``).
* :class:`AttributePredictor` and :class:`Describer`: attributes, or attributes and text, for
  crops (``personlens.inference.predict`` / ``.describe``).
* :func:`load_model`: any model directory or shipped name (``personlens.models.io``).

The README's "Python API" section is a runnable example (tests/test_readme_api.py runs it).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (PEP 562 lazy attributes)
_EXPORTS = {
    "PersonLibrary": "personlens.library",
    "SearchHit": "personlens.library",
    "IndexSummary": "personlens.library",
    "PersonPipeline": "personlens.inference.pipeline",
    "PersonRecord": "personlens.inference.records",
    "AttributePredictor": "personlens.inference.predict",
    "AttributePrediction": "personlens.inference.predict",
    "Describer": "personlens.inference.describe",
    "Description": "personlens.inference.describe",
    "PredictionError": "personlens.inference.batching",
    "load_model": "personlens.models.io",
    "SHIPPED": "personlens.models.hub",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'personlens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
