"""Secrets a server keeps in its data directory (the reconnect key, the rtcd bearer-token key): made once, read ever
after, so what was signed before a restart still verifies after it.

The file is created with ``open(..., "xb")`` and mode 0600 before anything is written: of two processes starting
at once, one creates it and both read the same bytes, and no other user can read them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["read_or_create_secret"]


def read_or_create_secret(path: Path, size: int = 32) -> bytes:
    """The bytes in ``path``; when it does not exist yet, ``size`` random bytes are written there first (mode 0600,
    parent directories made). The caller checks what it read: a file may have been damaged since."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "xb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(secrets.token_bytes(size))
    except FileExistsError:
        pass
    return path.read_bytes()
