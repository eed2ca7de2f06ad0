"""The service table: conventions every line relies on."""

from __future__ import annotations

import pytest

from bazaar.stack.services import GATEWAY, PSP_SANDBOX, SERVICES, all_specs, spec_named


def test_names_and_ports_are_unique() -> None:
    specs = all_specs()
    assert len({spec.name for spec in specs}) == len(specs)
    assert len({spec.default_port for spec in specs}) == len(specs)


def test_a_service_line_implies_package_factory_and_settings_prefix() -> None:
    catalog = spec_named("catalog")
    assert catalog.package == "bazaar.catalog"
    assert catalog.factory == "bazaar.catalog.app:create_app"
    assert catalog.env_prefix == "BAZAAR_CATALOG_"
    assert catalog.health_paths() == ("/healthz", "/readyz")


def test_the_gateway_and_the_sandbox_are_not_services_behind_the_gateway() -> None:
    assert GATEWAY not in SERVICES
    assert PSP_SANDBOX not in SERVICES
    assert GATEWAY.kind == "main"
    assert not GATEWAY.database
    assert spec_named("psp-sandbox") is PSP_SANDBOX
    assert PSP_SANDBOX.env_prefix == "BAZAAR_PSP_SANDBOX_"


def test_only_services_that_call_others_have_client_credentials() -> None:
    # Auth issues the tokens; the portal calls the API with its user's own token.
    without_client = {spec.name for spec in SERVICES if not spec.client}
    assert without_client == {"auth", "portal"}


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: auth"):
        spec_named("nope")
