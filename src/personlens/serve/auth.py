"""Bearer-token auth: the token comes from ``$PERSONLENS_TOKEN``, else ``DB/serve-token``
(generated on first start, mode 0600, so restarts keep it)."""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from ..fileperms import make_private_dirs

TOKEN_ENV = "PERSONLENS_TOKEN"
TOKEN_FILE = "serve-token"
COOKIE = "personlens_token"


def load_or_create_token(db_dir: Path, explicit: str | None = None) -> tuple[str, str]:
    """(token, where it came from: "argument" | "env" | "file" | "generated")."""
    if explicit:
        return explicit, "argument"
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env, "env"
    path = Path(db_dir) / TOKEN_FILE
    if path.exists():
        tok = path.read_text().strip()
        if tok:
            return tok, "file"
    make_private_dirs(path.parent)        # a new library directory is 0700
    tok = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    os.replace(tmp, path)
    return tok, "generated"


def token_matches(given: str | None, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def bearer(header_value: str | None) -> str | None:
    if not header_value:
        return None
    scheme, _, value = header_value.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None
