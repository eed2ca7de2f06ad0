"""The route table file: its rules, its patterns and the mistakes it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from bazaar.gateway.access import authorize
from bazaar.gateway.routing import (
    AUTHENTICATED,
    PUBLIC,
    Access,
    RouteTable,
    RouteTableError,
    load_route_table,
    parse_route_table,
)
from bazaar.kit.errors import Forbidden, InvalidToken
from bazaar.kit.tokens import Principal


def principal(*roles: str) -> Principal:
    return Principal(subject="u1", roles=frozenset(roles), token_id="t1", expires_at=2**31)


def table(rules: list[dict[str, object]], default: object = None) -> RouteTable:
    service: dict[str, object] = {"name": "shop", "rules": rules}
    if default is not None:
        service["default"] = default
    return parse_route_table({"services": [service]})


def access(routes: RouteTable, method: str, path: str) -> Access:
    match = routes.match(method, path)
    assert match is not None, f"{method} {path} matched nothing"
    return match.access


def test_the_packaged_table_covers_every_service_of_the_api() -> None:
    routes = load_route_table()
    assert {s.name for s in routes.services} >= {
        "auth",
        "catalog",
        "orders",
        "payments",
        "auctions",
        "support",
    }
    for service in routes.services:
        expected = "/" if service.name == "portal" else f"/api/{service.name}"
        assert service.prefix == expected


@pytest.mark.parametrize(
    ("method", "path", "access"),
    [
        ("POST", "/api/auth/register", PUBLIC),
        ("GET", "/api/auth/jwks.json", PUBLIC),
        ("GET", "/api/auth/me", AUTHENTICATED),
        ("GET", "/api/auth/users", Access("roles", frozenset({"support", "admin"}))),
        ("PUT", "/api/auth/users/42/roles", Access("roles", frozenset({"admin"}))),
        ("GET", "/api/catalog/items/1", PUBLIC),
        ("HEAD", "/api/catalog/items", PUBLIC),
        ("POST", "/api/catalog/items", Access("roles", frozenset({"seller", "admin"}))),
        ("POST", "/api/payments", Access("roles", frozenset({"service", "admin"}))),
        ("GET", "/api/orders/sales", Access("roles", frozenset({"seller"}))),
        ("GET", "/api/auctions/9/stream", PUBLIC),
        (
            "DELETE",
            "/api/support/anything/at/all",
            Access("roles", frozenset({"support", "admin"})),
        ),
    ],
)
def test_the_packaged_table_says_who_may_call(method: str, path: str, access: Access) -> None:
    match = load_route_table().match(method, path)
    assert match is not None
    assert match.access == access


def test_unknown_api_prefixes_match_nothing() -> None:
    routes = load_route_table()
    for path in ("/api/nope", "/api", "/api/catalogue/items"):
        assert routes.match("GET", path) is None, path


def test_every_path_outside_the_api_goes_to_the_portal_as_public() -> None:
    routes = load_route_table()
    for path in ("/", "/catalog", "/auctions/7/events", "/apix/catalog", "/static/portal.css"):
        match = routes.match("GET", path)
        assert match is not None, path
        assert match.service.pool == "portal"
        assert match.access.kind == "public"
    assert routes.match("POST", "/sign-in") is not None


def test_only_one_entry_may_serve_the_site() -> None:
    document = {
        "services": [
            {"name": "a", "prefix": "/", "pool": "a", "default": "public"},
            {"name": "b", "prefix": "/", "pool": "b", "default": "public"},
        ]
    }
    with pytest.raises(RouteTableError):
        parse_route_table(document)


def test_patterns_one_segment_any_rest_and_first_match_wins() -> None:
    routes = table(
        [
            {"methods": "GET", "path": "/api/shop/items/special", "allow": ["admin"]},
            {"methods": "GET", "path": "/api/shop/items/{id}", "allow": "public"},
            {
                "methods": ["POST", "PUT"],
                "path": "/api/shop/items/*/photos/**",
                "allow": ["seller"],
            },
        ]
    )
    assert access(routes, "GET", "/api/shop/items/special").roles == {"admin"}
    assert access(routes, "GET", "/api/shop/items/42") == PUBLIC
    assert routes.match("GET", "/api/shop/items/42/more") is None
    photos = routes.match("PUT", "/api/shop/items/42/photos")
    assert photos is not None and photos.access.roles == {"seller"}
    assert routes.match("POST", "/api/shop/items/42/photos/1/large") is not None
    assert routes.match("DELETE", "/api/shop/items/42/photos") is None


def test_the_default_covers_paths_no_rule_names() -> None:
    routes = table(
        [{"methods": "GET", "path": "/api/shop/open", "allow": "public"}], "authenticated"
    )
    assert access(routes, "GET", "/api/shop/open") == PUBLIC
    assert access(routes, "PROPFIND", "/api/shop/x/y") == AUTHENTICATED


def test_a_star_method_rule_applies_to_every_method() -> None:
    routes = table([{"methods": "*", "path": "/api/shop/**", "allow": ["support"]}])
    for method in ("GET", "POST", "DELETE", "PATCH", "PROPFIND"):
        assert access(routes, method, "/api/shop/a").roles == {"support"}


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"path": "/api/other/x", "allow": "public"}], "not under"),
        ([{"path": "/api/shop/**/x", "allow": "public"}], "may only end"),
        ([{"path": "/api/shop/x", "allow": ["wizard"]}], "unknown roles"),
        ([{"path": "/api/shop/x", "allow": "everyone"}], "unknown roles"),
        ([{"path": "/api/shop/x"}], "allow must be"),
        ([{"allow": "public"}], "'path' is required"),
        ([{"path": "/api/shop/a b", "allow": "public"}], "bad path segment"),
    ],
)
def test_mistakes_in_the_table_are_refused_with_where_they_are(
    rules: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(RouteTableError, match=message):
        table(rules)


def test_two_services_may_not_claim_one_prefix() -> None:
    with pytest.raises(RouteTableError, match="two services"):
        parse_route_table({"services": [{"name": "a", "prefix": "/api/a"}] * 2})


def test_a_table_file_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("services: [\n")
    with pytest.raises(RouteTableError, match="cannot read"):
        load_route_table(path)


def test_authorize_public_authenticated_and_roles() -> None:
    authorize(PUBLIC, None)
    authorize(PUBLIC, principal("customer"))
    with pytest.raises(InvalidToken):
        authorize(AUTHENTICATED, None)
    authorize(AUTHENTICATED, principal("service"))
    sellers = Access("roles", frozenset({"seller", "admin"}))
    with pytest.raises(InvalidToken):
        authorize(sellers, None)
    with pytest.raises(Forbidden, match="admin, seller"):
        authorize(sellers, principal("customer"))
    authorize(sellers, principal("customer", "seller"))
