"""Keyed on-disk array caches: one key function, one atomic save, one tolerant load.

Every feature cache of the package (``train.features``: frozen lower-stage features;
``inference.pooled``: pooled encoder features, LOMO descriptors and text embeddings;
``train.describer``: describer tokens) keeps ``.npy`` arrays, with optional JSON metadata
beside them, in a folder named after what made them (a model fingerprint, a config)::

    cache = ArrayCache(root, namespace)        # files under root/namespace/
    arr = cache.load(name, shape=(n, 2, None)) # None: missing, unreadable or of another shape
    if arr is None:
        arr = compute()
        cache.save(name, arr, meta={...})      # name.npy (+ name.json), each written atomically

A wrong shape or an unreadable file reads as missing, so the caller recomputes and
overwrites it: that is the whole invalidation. Saves write a temporary file beside the
target and ``os.replace`` it, so a reader never sees half a file and a crash leaves at
most a stray ``.tmp`` file, never a corrupt array.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["key", "ArrayCache", "RowWriter"]

_READ_ERRORS = (OSError, ValueError, EOFError)


def key(*parts, digest_size: int = 10, sort_keys: bool = True) -> str:
    """Hex blake2b digest (``2 * digest_size`` characters) of the JSON of ``parts`` (of the
    part itself when there is one, else of the list of parts)."""
    payload = parts[0] if len(parts) == 1 else list(parts)
    text = json.dumps(payload, sort_keys=sort_keys)
    return hashlib.blake2b(text.encode(), digest_size=digest_size).hexdigest()


def _atomic_write(path: Path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, then move it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _shape_ok(shape: tuple, want: Sequence[int | None] | None) -> bool:
    if want is None:
        return True
    return len(shape) == len(want) and all(w is None or int(w) == s for s, w in zip(shape, want))


class ArrayCache:
    """``.npy`` arrays and ``.json`` metadata under ``root/namespace/``, by name."""

    def __init__(self, root: str | Path, namespace: str = ""):
        self.dir = Path(root) / namespace if namespace else Path(root)

    def __repr__(self) -> str:
        return f"ArrayCache({str(self.dir)!r})"

    def path(self, name: str) -> Path:
        """The array file of ``name``: ``<dir>/<name>.npy``."""
        return self.dir / f"{name}.npy"

    def meta_path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def load(self, name: str, shape: Sequence[int | None] | None = None, dtype=None,
             mmap: bool = False) -> np.ndarray | None:
        """The array ``name``, or ``None`` when it is missing, unreadable, or not of ``shape``
        (``None`` entries match any size) and ``dtype``. ``mmap``: memory-mapped, read-only."""
        try:
            arr = np.load(self.path(name), mmap_mode="r" if mmap else None, allow_pickle=False)
        except _READ_ERRORS:
            return None
        if not isinstance(arr, np.ndarray) or not _shape_ok(arr.shape, shape):
            return None
        if dtype is not None and arr.dtype != np.dtype(dtype):
            return None
        return arr

    def save(self, name: str, array: np.ndarray, meta: dict | None = None) -> Path:
        """Write ``<name>.npy`` (and ``<name>.json`` from ``meta``), each atomically; the
        array first, so metadata never describes an array that is not there yet."""
        path = self.path(name)
        _atomic_write(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))
        if meta is not None:
            self.save_meta(name, meta)
        return path

    def load_meta(self, name: str) -> dict | None:
        """The JSON object ``<name>.json``, or ``None`` when missing or unreadable."""
        try:
            meta = json.loads(self.meta_path(name).read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def save_meta(self, name: str, meta: dict) -> Path:
        path = self.meta_path(name)
        _atomic_write(path, lambda f: f.write(json.dumps(meta).encode()))
        return path

    def names(self) -> list[str]:
        """Names that have metadata (``<name>.json``), sorted."""
        return sorted(p.stem for p in self.dir.glob("*.json")) if self.dir.is_dir() else []

    @contextmanager
    def writing(self, name: str, rows: int, dtype) -> Iterator[RowWriter]:
        """Fill a large array block by block without holding it in memory: a memory-mapped
        temporary file, of ``rows`` rows and the row shape of the first block put, that
        becomes ``<name>.npy`` when the block exits without an error (and is removed when
        it raises)."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        w = RowWriter(Path(tmp), rows, dtype)
        try:
            yield w
            w.close()
            os.replace(tmp, path)
        except BaseException:
            w.close()
            Path(tmp).unlink(missing_ok=True)
            raise


class RowWriter:
    """Rows of a memory-mapped ``.npy`` file, allocated at the first ``put``."""

    def __init__(self, path: Path, rows: int, dtype):
        self.path, self.rows, self.dtype = path, rows, np.dtype(dtype)
        self._arr = None
        self._closed = False

    def put(self, start: int, block: np.ndarray) -> None:
        """Write ``block`` into rows ``start : start + len(block)``."""
        if self._arr is None:
            self._arr = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype,
                                                  shape=(self.rows, *block.shape[1:]))
        self._arr[start:start + len(block)] = block

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._arr is None:   # nothing put: an empty array of ``rows`` rows
            with open(self.path, "wb") as f:
                np.save(f, np.zeros((self.rows,), self.dtype))
        else:
            self._arr.flush()
            self._arr = None
