"""The gateway's own endpoints: merged OpenAPI, Swagger UI, health, readiness, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, create_model

from bazaar.kit.testing import wait_for
from bazaar.stack.ports import free_port, port_open
from tests.integration.gateway.conftest import (
    GatewayUnderTest,
    Keys,
    StartGateway,
    StartUpstream,
    bearer,
)
from tests.integration.gateway.standins import AuthStandIn, EchoUpstream, RunningServer

# Two services each name a schema "Item", and they differ.
CatalogItem = create_model("Item", id=(str, ...), title=(str, ...))
OrderLine = create_model("Item", item_id=(str, ...), quantity=(int, ...))


class Order(BaseModel):
    items: list[OrderLine]


def catalog_app() -> FastAPI:
    app = FastAPI(title="catalog", openapi_url="/api/catalog/openapi.json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/catalog/items")
    async def create_item(item: CatalogItem) -> CatalogItem:
        return item

    return app


def orders_app() -> FastAPI:
    app = FastAPI(title="orders", openapi_url="/api/orders/openapi.json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/orders")
    async def create_order(order: Order) -> Order:
        return order

    return app


StartFastApi = Callable[[FastAPI], Awaitable[str]]


@pytest.fixture
async def start_fastapi() -> AsyncIterator[StartFastApi]:
    """Serve FastAPI apps with uvicorn, as the services are served."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(app: FastAPI) -> str:
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        servers.append((server, task))
        await wait_for(lambda: port_open("127.0.0.1", port), message="uvicorn")
        return f"http://127.0.0.1:{port}"

    yield start
    for server, _ in servers:
        server.should_exit = True
    await asyncio.gather(*(task for _, task in servers))


async def test_the_merged_openapi_document_covers_every_running_service(
    start_fastapi: StartFastApi,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    catalog = await start_fastapi(catalog_app())
    orders = await start_fastapi(orders_app())
    gateway = await start_gateway({"catalog": [catalog], "orders": [orders]})

    async with http.get(gateway.api("/api/openapi.json")) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        document = await response.json()

    assert document["openapi"].startswith("3.")
    assert {"/api/catalog/items", "/api/orders"} <= set(document["paths"])
    schemas = document["components"]["schemas"]
    # Two services named different schemas "Item": each gets its service's prefix.
    assert "catalog.Item" in schemas and "orders.Item" in schemas
    assert "Item" not in schemas
    assert "title" in schemas["catalog.Item"]["properties"]
    assert "quantity" in schemas["orders.Item"]["properties"]
    assert schemas["Order"]["properties"]["items"]["items"]["$ref"] == (
        "#/components/schemas/orders.Item"
    )
    body = document["paths"]["/api/catalog/items"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"] == (
        "#/components/schemas/catalog.Item"
    )
    # Identical schemas (FastAPI's validation errors) are shared, not duplicated.
    assert "HTTPValidationError" in schemas
    assert "catalog.HTTPValidationError" not in schemas
    assert document["paths"]["/api/orders"]["post"]["tags"] == ["orders"]
    assert "auctions" in document["x-bazaar-unavailable"]
    # The portal serves pages, not an API: it is neither asked nor missing.
    assert "portal" not in document["x-bazaar-unavailable"]


async def test_swagger_ui_is_served_offline(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway({})
    async with http.get(gateway.api("/api/docs")) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert 'url: "/api/openapi.json"' in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert f"/api/docs/assets/{asset}" in page
        async with http.get(gateway.api(f"/api/docs/assets/{asset}")) as response:
            assert response.status == 200, asset
            assert len(await response.read()) > 1000
    for missing in ("/api/docs/assets/nope.js", "/api/docs/assets/..%2F..%2Fsettings.py"):
        async with http.get(gateway.api(missing)) as response:
            assert response.status == 404
            assert response.content_type == "application/problem+json"


async def test_api_health_tells_staff_about_every_replica(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    gateway, _ = echo_everywhere
    async with http.get(gateway.api("/api/health")) as response:
        assert await response.json() == {"status": "ok"}
    customer = bearer(keys.current.token(["customer"]))
    async with http.get(gateway.api("/api/health"), headers=customer) as response:
        assert await response.json() == {"status": "ok"}
    for role in ("support", "admin"):
        staff = bearer(keys.current.token(["customer", role]))
        async with http.get(gateway.api("/api/health"), headers=staff) as response:
            body = await response.json()
        assert body["status"] == "ok"
        catalog = body["services"]["catalog"]
        assert catalog["healthy"] is True
        assert catalog["replicas"][0]["healthy"] is True
        assert catalog["replicas"][0]["url"].startswith("http://127.0.0.1:")
    async with http.get(gateway.api("/api/health"), headers=bearer("forged")) as response:
        assert response.status == 401


async def test_api_health_is_degraded_while_a_pool_has_no_healthy_replica(
    auth: tuple[AuthStandIn, RunningServer],
    start_upstream: StartUpstream,
    start_gateway: StartGateway,
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    catalog, catalog_server = await start_upstream("catalog")
    gateway = await start_gateway({"auth": [auth[1].url], "catalog": [catalog_server.url]})
    admin = bearer(keys.current.token(["admin"]))
    async with http.get(gateway.api("/api/health"), headers=admin) as response:
        body = await response.json()
    # Services not deployed (no replicas configured) do not make it degraded.
    assert body["status"] == "ok"
    assert body["services"]["orders"] == {"healthy": False, "replicas": []}

    catalog.healthy = False
    replica = gateway.gateway.balancer.pool("catalog").replicas[0]
    await wait_for(lambda: not replica.healthy, timeout=5, message="catalog ejected")
    async with http.get(gateway.api("/api/health"), headers=admin) as response:
        body = await response.json()
    assert response.status == 200
    assert body["status"] == "degraded"
    assert body["services"]["catalog"]["healthy"] is False
    assert body["services"]["auth"]["healthy"] is True


async def test_health_readiness_and_metrics(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream], http: aiohttp.ClientSession
) -> None:
    gateway, _ = echo_everywhere
    async with http.get(gateway.api("/healthz")) as response:
        assert await response.json() == {"status": "ok"}
    async with http.get(gateway.api("/readyz")) as response:
        assert await response.json() == {"status": "ready"}
    async with http.get(gateway.api("/api/catalog/items")) as response:
        assert response.status == 200
    async with http.get(gateway.api("/api/nowhere")) as response:
        assert response.status == 404
    async with http.get(gateway.api("/metrics")) as response:
        text = await response.text()
    assert 'bazaar_gateway_requests_total{prefix="catalog",status="200"} 1.0' in text
    assert 'bazaar_gateway_requests_total{prefix="unmatched",status="404"} 1.0' in text
    assert 'bazaar_gateway_request_duration_seconds_count{prefix="catalog"} 1.0' in text
    assert "bazaar_gateway_upstream_healthy{pool=" in text
