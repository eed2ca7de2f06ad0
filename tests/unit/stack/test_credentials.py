"""Client secrets of the embedded stack: made once, private, reused."""

from __future__ import annotations

import json
from pathlib import Path

from bazaar.stack.credentials import load_client_secrets, signing_key_passphrase


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    first = load_client_secrets(tmp_path, ["catalog", "orders"])

    path = tmp_path / "secrets.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(first) == {"catalog", "orders"}
    assert len(set(first.values())) == 2
    assert all(len(secret) >= 32 for secret in first.values())
    assert load_client_secrets(tmp_path, ["catalog", "orders"]) == first


def test_a_new_client_gets_a_secret_and_the_old_ones_stay(tmp_path: Path) -> None:
    first = load_client_secrets(tmp_path, ["catalog"])

    second = load_client_secrets(tmp_path, ["catalog", "payments"])

    assert second["catalog"] == first["catalog"]
    stored = json.loads((tmp_path / "secrets.json").read_text())["clients"]
    assert stored == second


def test_a_file_made_readable_by_others_is_made_private_again(tmp_path: Path) -> None:
    load_client_secrets(tmp_path, ["catalog"])
    path = tmp_path / "secrets.json"
    path.chmod(0o644)

    load_client_secrets(tmp_path, ["catalog"])

    assert path.stat().st_mode & 0o777 == 0o600


def test_the_signing_key_passphrase_is_made_once_and_kept_beside_the_clients(
    tmp_path: Path,
) -> None:
    clients = load_client_secrets(tmp_path, ["catalog"])
    passphrase = signing_key_passphrase(tmp_path)

    assert len(passphrase) >= 32
    assert signing_key_passphrase(tmp_path) == passphrase
    assert load_client_secrets(tmp_path, ["catalog", "orders"])["catalog"] == clients["catalog"]
    assert signing_key_passphrase(tmp_path) == passphrase
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
