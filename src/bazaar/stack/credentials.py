"""Secrets of the embedded stack, generated once and kept in ``<data-dir>/secrets.json``.

Each service that calls others through the gateway authenticates with client
credentials. ``bazaar up`` makes a secret per client the first time it runs on a data
directory and reuses it afterwards, so that a restart does not invalidate what auth
stored. The same file keeps the passphrase auth encrypts its signing keys with, so that
the database directory alone (a copied volume, a backup) signs nothing. The file is
readable by its owner only.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SECRETS_FILE = "secrets.json"


def load_client_secrets(data_dir: Path, client_ids: Iterable[str]) -> dict[str, str]:
    """The secret of every client in ``client_ids``, creating (and saving) the missing ones."""
    wanted = list(client_ids)
    document = _read(data_dir)
    stored: dict[str, str] = dict(document.get("clients", {}))
    missing = [client for client in wanted if client not in stored]
    for client in missing:
        stored[client] = secrets.token_urlsafe(32)
    if missing:
        _save(data_dir, {**document, "clients": stored})
    return {client: stored[client] for client in wanted}


def signing_key_passphrase(data_dir: Path) -> str:
    """Auth's signing-key passphrase for this data directory, made (and saved) if missing."""
    document = _read(data_dir)
    passphrase = document.get("signing_key_passphrase")
    if not isinstance(passphrase, str) or not passphrase:
        passphrase = secrets.token_urlsafe(32)
        _save(data_dir, {**document, "signing_key_passphrase": passphrase})
    return passphrase


def _read(data_dir: Path) -> dict[str, Any]:
    path = data_dir / SECRETS_FILE
    if not path.exists():
        return {}
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _save(data_dir: Path, document: dict[str, Any]) -> None:
    _write_private(data_dir / SECRETS_FILE, json.dumps(document, indent=2, sort_keys=True) + "\n")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, never readable by anyone but the owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
