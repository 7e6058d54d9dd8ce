"""Private files: a library's directory, its database, indexes, uploads and video crops are
readable by their owner only (directories 0700, files 0600), whatever the umask, like the
API token (``DB/serve-token``). Only what personlens creates is made private: an existing
directory keeps its mode.

Modes are given when a file or directory is created (``os.open`` / ``os.mkdir``), so no
process-wide umask is changed (the server writes files from several threads).
"""
from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private_dirs(path: str | Path) -> Path:
    """``mkdir -p`` where every directory created is 0700 (existing ones are left as they are)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR)
        except FileExistsError:
            pass
    return path


def private_opener(path, flags: int) -> int:
    """An ``opener`` for ``open()``: a file created by it is 0600."""
    return os.open(path, flags, PRIVATE_FILE)


def write_private(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (created 0600; truncated if it exists)."""
    with open(path, "wb", opener=private_opener) as f:
        f.write(data)


def touch_private(path: str | Path) -> bool:
    """Create ``path`` empty and 0600 unless it exists; True when it was created."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        return False
    return True
