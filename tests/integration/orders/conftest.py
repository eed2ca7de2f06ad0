"""The orders service in this process, and the rest of the marketplace around it.

Orders talks to the others two ways, and the tests provide both for real:

* **HTTP through the gateway** (pricing a cart, checking a payment method) with a
  client-credentials token: a :class:`GatewayStandIn` on a loopback port issues
  service tokens like auth does, forwards ``/api/catalog/**`` to the real catalog app
  (or, with ``real_catalog=False``, answers from items the test lists), and answers
  ``GET /api/payments/methods/{id}`` from methods the test registers, with the shape
  the payments service gives service callers.
* **The broker** (the saga): with ``real_catalog=True`` the catalog service runs
  in-process and answers stock commands itself; payments (and, without the real
  catalog, the catalog too) is played by the test through :class:`Market` helpers
  that read the commands orders sent and publish the answers.

When the real gateway, auth and payments run together (``tests/e2e``), the same
orders app is reached through the gateway instead; nothing in it changes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiohttp import web

from bazaar.catalog.app import create_app as create_catalog_app
from bazaar.catalog.settings import CatalogSettings
from bazaar.contracts import catalog as catalog_contract
from bazaar.contracts import orders as orders_contract
from bazaar.contracts import payments as payments_contract
from bazaar.contracts.base import Message
from bazaar.contracts.topics import ALL_TOPICS
from bazaar.kit.config import PlatformSettings
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.messaging.kafka import ensure_topics
from bazaar.kit.testing import DatabaseFactory, TokenIssuer, running_app, wait_for
from bazaar.orders.app import create_app as create_orders_app
from bazaar.orders.settings import OrdersSettings
from bazaar.stack.ports import free_port
from tests.integration.peers import TopicWatcher, envelope_of, payment_outcome, send

CLIENT_ID = "orders"
CLIENT_SECRET = "orders-test-secret"
ORDERS = "/api/orders"
ITEMS = "/api/catalog/items"
GOOD_CARD = "pm_visa"


class GatewayStandIn:
    """The slice of the gateway (and of auth and payments behind it) that orders calls."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer
        self.catalog: httpx.AsyncClient | None = None
        self.items: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, dict[str, Any]] = {}
        self.service_tokens: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []
        self.url = ""
        app = web.Application()
        app.router.add_post("/api/auth/token", self._token)
        app.router.add_get("/api/catalog/{tail:.*}", self._catalog)
        app.router.add_get("/api/payments/methods/{method_id}", self._method)
        self._runner = web.AppRunner(app)

    async def start(self) -> None:
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()

    def add_method(self, user_id: str, method_id: str | None = None) -> str:
        method_id = method_id or str(uuid.uuid4())
        self.methods[method_id] = {
            "id": method_id,
            "user_id": user_id,
            "brand": "visa",
            "last4": "4242",
            "exp_month": 12,
            "exp_year": 2030,
        }
        return method_id

    def _caller(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        return token if token in self.service_tokens else None

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != CLIENT_SECRET
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = self.issuer.mint(CLIENT_ID, roles=["service"])
        self.service_tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 900})

    async def _catalog(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", request.path_qs, self._caller(request)))
        if self.catalog is not None:
            forwarded = await self.catalog.get(request.path_qs)
            return web.Response(
                body=forwarded.content,
                status=forwarded.status_code,
                content_type=forwarded.headers["content-type"].split(";")[0],
            )
        wanted = request.query.get("ids", "").split(",")
        found = [self.items[item_id] for item_id in wanted if item_id in self.items]
        return web.json_response({"items": found, "next_cursor": None})

    async def _method(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        self.requests.append(("GET", request.path_qs, caller))
        if caller is None:
            return web.json_response({"code": "invalid_token"}, status=401)
        method = self.methods.get(request.match_info["method_id"])
        if method is None:
            return web.json_response({"code": "payment_method_not_found"}, status=404)
        return web.json_response(method)


@dataclass
class Market:
    """Orders under test, and everything the test needs to act as its neighbours."""

    orders: httpx.AsyncClient
    gateway: GatewayStandIn
    platform: PlatformSettings
    messages: TopicWatcher
    issuer: TokenIssuer
    catalog: httpx.AsyncClient | None
    seller_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    # --- people and things ------------------------------------------------------------

    def buyer(self) -> tuple[str, dict[str, str], str]:
        """A new customer: (user id, auth headers, id of a payment method of theirs)."""
        user_id = str(uuid.uuid4())
        return user_id, self.issuer.headers(user_id, ["customer"]), self.gateway.add_method(user_id)

    def headers(self, user_id: str | None = None, *roles: str) -> dict[str, str]:
        return self.issuer.headers(user_id or str(uuid.uuid4()), list(roles) or ["customer"])

    async def new_item(
        self,
        *,
        price: int = 1500,
        stock: int | None = 10,
        currency: str = "EUR",
        active: bool = True,
        seller_id: str | None = None,
        title: str = "Teapot",
    ) -> str:
        seller = seller_id or self.seller_id
        if self.catalog is None:
            item_id = str(uuid.uuid4())
            self.gateway.items[item_id] = {
                "id": item_id,
                "seller_id": seller,
                "kind": "good",
                "title": title,
                "description": "",
                "price": price,
                "currency": currency,
                "stock": stock,
                "active": active,
                "created_at": datetime.now(UTC).isoformat(),
                "updated_at": datetime.now(UTC).isoformat(),
            }
            return item_id
        headers = self.issuer.headers(seller, ["seller"])
        body = {"kind": "good", "title": title, "price": price, "currency": currency}
        created = await self.catalog.post(ITEMS, json={**body, "stock": stock}, headers=headers)
        assert created.status_code == 201, created.text
        item_id = str(created.json()["id"])
        if not active:
            await self.catalog.patch(f"{ITEMS}/{item_id}", json={"active": False}, headers=headers)
        return item_id

    async def stock_of(self, item_id: str) -> int | None:
        assert self.catalog is not None
        stock: int | None = (await self.catalog.get(f"{ITEMS}/{item_id}")).json()["stock"]
        return stock

    # --- orders -------------------------------------------------------------------------

    async def place(
        self,
        headers: dict[str, str],
        method_id: str,
        *lines: tuple[str, int],
        key: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "items": [{"item_id": item, "quantity": q} for item, q in lines],
            "payment_method_id": method_id,
        }
        extra = {"Idempotency-Key": key} if key else {}
        response = await self.orders.post(ORDERS, json=body, headers={**headers, **extra})
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        return order

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.orders.get(
            f"{ORDERS}/{order_id}", headers=self.headers(None, "support")
        )
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order

    async def settled(self, order_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
        """The order once it has ``status``."""

        async def reached() -> dict[str, Any] | None:
            order = await self.order(order_id)
            return order if order["status"] == status else None

        return await wait_for(reached, timeout=timeout, message=f"order {order_id} {status}")

    # --- the broker -------------------------------------------------------------------

    async def sent(
        self, message: type[Message], order_id: str, *, count: int = 1, timeout: float = 20
    ) -> list[Envelope]:
        """Messages of this type orders published about the order (by correlation id)."""
        return await self.messages.wait_for(
            message, count=count, where=lambda e: e.correlationid == order_id, timeout=timeout
        )

    def count(self, message: type[Message], order_id: str) -> int:
        return len([e for e in self.messages.of_type(message) if e.correlationid == order_id])

    async def answer(self, message: Message, order_id: str, *, key: str) -> Envelope:
        """Publish an answer (a catalog or payments event) about the order."""
        envelope = envelope_of(message, key=key, correlation_id=order_id)
        await send(self.platform, message.TOPIC, [envelope], key=key)
        return envelope

    async def redeliver(self, envelope: Envelope, *, key: str, topic: str) -> None:
        await send(self.platform, topic, [envelope], key=key)

    async def charge(self, order_id: str, *, attempt: int = 1) -> payments_contract.ChargePayment:
        [*_, command] = await self.sent(payments_contract.ChargePayment, order_id, count=attempt)
        return payments_contract.ChargePayment.model_validate(command.data)

    async def pay(
        self, charge: payments_contract.ChargePayment, outcome: str = "succeeded", **extra: Any
    ) -> Envelope:
        """Answer a charge as payments would: ``succeeded``, ``failed`` (with
        ``failure_code``), ``refunded`` or ``cancelled``."""
        message = payment_outcome(charge, outcome, **extra)
        return await self.answer(message, str(charge.reference_id), key=str(charge.payment_id))


OpenMarket = Callable[..., Awaitable[Market]]

WATCHED = [
    catalog_contract.COMMANDS_TOPIC,
    catalog_contract.TOPIC,
    payments_contract.COMMANDS_TOPIC,
    payments_contract.TOPIC,
    orders_contract.TOPIC,
]


@pytest.fixture
async def open_market(
    database_factory: DatabaseFactory,
    platform_settings: PlatformSettings,
    token_issuer: TokenIssuer,
) -> AsyncIterator[OpenMarket]:
    """``await open_market(real_catalog=True, replicas=1, **orders_settings)``.

    Orders' saga timer looks every 0.1 s; the step deadlines are the production ones
    unless the test passes its own (``reserve_deadline_seconds=0.5``, …).
    """
    async with AsyncExitStack() as stack:

        async def open_(
            *, real_catalog: bool = True, replicas: int = 1, **overrides: Any
        ) -> Market:
            await ensure_topics(platform_settings, ALL_TOPICS)
            gateway = GatewayStandIn(token_issuer)
            await gateway.start()
            stack.push_async_callback(gateway.stop)
            platform = platform_settings.model_copy(update={"gateway_url": gateway.url})
            messages = TopicWatcher(platform, WATCHED)
            await stack.enter_async_context(messages.running())

            catalog: httpx.AsyncClient | None = None
            if real_catalog:
                catalog_url = await database_factory.create("bazaar.catalog")
                catalog_settings = CatalogSettings(
                    database_url=catalog_url.render_as_string(hide_password=False)
                )
                catalog = await stack.enter_async_context(
                    running_app(create_catalog_app(catalog_settings, platform))
                )
                gateway.catalog = catalog

            orders_url = await database_factory.create("bazaar.orders")
            values: dict[str, Any] = {
                "database_url": orders_url.render_as_string(hide_password=False),
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "saga_timer_interval_seconds": 0.1,
            }
            values.update(overrides)
            settings = OrdersSettings(**values)
            clients = [
                await stack.enter_async_context(running_app(create_orders_app(settings, platform)))
                for _ in range(replicas)
            ]
            return Market(clients[0], gateway, platform, messages, token_issuer, catalog)

        yield open_


@pytest.fixture
async def market(open_market: OpenMarket) -> Market:
    """The real catalog, orders with production deadlines; payments played by the test."""
    return await open_market()


@pytest.fixture
async def shop_front(open_market: OpenMarket) -> Market:
    """Orders alone, catalog and payments played by the test (for the HTTP surface)."""
    return await open_market(real_catalog=False)
