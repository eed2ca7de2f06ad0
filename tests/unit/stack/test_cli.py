"""The command line's own behaviour: arguments, errors and exit codes (no stack started)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from bazaar.cli import _parse_replicas, app

runner = CliRunner()


def test_replicas_are_parsed_per_service() -> None:
    assert _parse_replicas(["catalog=2", "psp-sandbox=1"]) == {"catalog": 2, "psp_sandbox": 1}


@pytest.mark.parametrize("value", ["catalog", "catalog=0", "catalog=two", "=2x"])
def test_bad_replicas_are_refused(value: str) -> None:
    with pytest.raises(typer.BadParameter):
        _parse_replicas([value])


def test_up_refuses_replicas_of_an_unknown_service(tmp_path: object) -> None:
    result = runner.invoke(app, ["up", "--data-dir", str(tmp_path), "--replicas", "nope=2"])
    assert result.exit_code == 1
    assert "unknown service" in result.output


def test_serve_refuses_an_unknown_service() -> None:
    result = runner.invoke(app, ["serve", "nope"])
    assert result.exit_code == 1
    assert "unknown service" in result.output


def test_migrate_without_database_urls_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BAZAAR_CATALOG_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["migrate", "catalog"])
    assert result.exit_code == 1
    assert "BAZAAR_CATALOG_DATABASE_URL" in result.output


def test_users_create_refuses_an_unknown_role() -> None:
    result = runner.invoke(
        app,
        ["users", "create", "--email", "a@b.test", "--password", "long-enough", "--role", "king"],
    )
    assert result.exit_code == 2
    assert "king" in result.output
