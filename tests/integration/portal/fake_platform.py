"""A stand-in for the public API behind the gateway, over real HTTP, for the portal's tests.

It answers the way API.md says (problem+json with ``detail`` and ``errors``, OAuth
errors for the token endpoint, rotating refresh tokens whose reuse revokes the
family) and records what it was asked, so tests can check what the portal sent.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer


def problem(status: int, code: str, detail: str, **extra: Any) -> web.Response:
    body = {
        "type": f"https://bazaar.dev/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/problem+json"
    )


def fake_jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2ln"


@dataclass
class User:
    id: str
    email: str
    display_name: str
    password: str
    roles: list[str]


@dataclass
class FakePlatform:
    access_ttl: int = 900
    users: dict[str, User] = field(default_factory=dict)
    access: dict[str, tuple[str, float]] = field(default_factory=dict)
    refresh: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)
    # None: auctions is down (503); else the auctions listed, each with "bidders" (ids of
    # users who bid) and, per bidder, a "standings" entry.
    auctions: list[dict[str, Any]] | None = None
    refresh_grants: int = 0
    revoked_families: set[str] = field(default_factory=set)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    # --- helpers for tests ---------------------------------------------------------------

    def add_user(
        self,
        email: str,
        password: str = "password-123",
        roles: list[str] | None = None,
        display_name: str = "Test User",
    ) -> User:
        user = User(str(uuid.uuid4()), email, display_name, password, roles or ["customer"])
        self.users[email.lower()] = user
        return user

    def add_item(
        self, title: str, price: int = 1250, currency: str = "USD", stock: int | None = 10
    ) -> dict[str, Any]:
        item = {
            "id": str(uuid.uuid4()),
            "seller_id": str(uuid.uuid4()),
            "kind": "good",
            "title": title,
            "description": f"About {title}",
            "price": price,
            "currency": currency,
            "stock": stock,
            "active": True,
            "created_at": "2026-11-25T10:00:00Z",
            "updated_at": "2026-11-25T10:00:00Z",
        }
        self.items[item["id"]] = item
        return item

    def revoke_access_of(self, email: str) -> None:
        user = self.users[email.lower()]
        for token, (owner, _) in list(self.access.items()):
            if owner == user.id:
                del self.access[token]

    def bodies_sent_to(self, path: str) -> list[bytes]:
        return [body for method, seen, body, _ in self.requests if seen == path and method != "GET"]

    # --- tokens --------------------------------------------------------------------------

    def _mint(self, user: User, family: str) -> dict[str, Any]:
        now = int(time.time())
        access = fake_jwt(
            {
                "sub": user.id,
                "roles": user.roles,
                "exp": now + self.access_ttl,
                "iat": now,
                "jti": uuid.uuid4().hex,
            }
        )
        self.access[access] = (user.id, now + self.access_ttl)
        refresh = uuid.uuid4().hex
        self.refresh[refresh] = {"user": user, "family": family, "spent": False}
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "refresh_token": refresh,
        }

    def _caller(self, request: web.Request) -> User | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        entry = self.access.get(token)
        if entry is None or entry[1] < time.time():
            return None
        return next((user for user in self.users.values() if user.id == entry[0]), None)

    # --- the app -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/api/auth/register", self._register)
        app.router.add_post("/api/auth/token", self._token)
        app.router.add_post("/api/auth/revoke", self._revoke)
        app.router.add_get("/api/auth/me", self._me)
        app.router.add_get("/api/catalog/items", self._items)
        app.router.add_get("/api/catalog/items/{id}", self._item)
        app.router.add_get("/api/payments/methods", self._methods)
        app.router.add_post("/api/payments/methods", self._add_method)
        app.router.add_get("/api/orders", self._orders)
        app.router.add_post("/api/orders", self._create_order)
        app.router.add_get("/api/orders/{id}", self._order)
        app.router.add_get("/api/auctions", self._auctions)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path, body, dict(request.headers)))
        public = {"/api/auth/register", "/api/auth/token", "/api/auth/revoke", "/api/auctions"}
        protected = request.path not in public and not request.path.startswith("/api/catalog")
        if protected and self._caller(request) is None:
            response = problem(401, "invalid_token", "An access token is required")
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response
        result: web.StreamResponse = await handler(request)
        return result

    async def _register(self, request: web.Request) -> web.Response:
        data = await request.json()
        errors = []
        if "@" not in data.get("email", ""):
            errors.append({"field": "email", "message": "value is not a valid email address"})
        if len(data.get("password", "")) < 8:
            errors.append({"field": "password", "message": "at least 8 characters"})
        if errors:
            return problem(
                422, "validation_failed", "One or more fields are missing or invalid", errors=errors
            )
        if data["email"].lower() in self.users:
            return problem(409, "email_taken", "An account with this email already exists")
        user = self.add_user(data["email"], data["password"], display_name=data["display_name"])
        return web.json_response(self._user_json(user), status=201)

    @staticmethod
    def _user_json(user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "email": user.email,
            "display_name": user.display_name,
            "roles": user.roles,
            "created_at": "2026-11-25T10:00:00Z",
        }

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") == "password":
            user = self.users.get(str(form.get("username", "")).lower())
            if user is None or user.password != form.get("password"):
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Wrong email or password"},
                    status=400,
                )
            return web.json_response(self._mint(user, uuid.uuid4().hex))
        if form.get("grant_type") == "refresh_token":
            self.refresh_grants += 1
            entry = self.refresh.get(str(form.get("refresh_token", "")))
            if entry is None or entry["family"] in self.revoked_families:
                return web.json_response({"error": "invalid_grant"}, status=400)
            if entry["spent"]:
                self.revoked_families.add(entry["family"])
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Refresh token reused"},
                    status=400,
                )
            entry["spent"] = True
            return web.json_response(self._mint(entry["user"], entry["family"]))
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    async def _revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", ""))
        self.access.pop(token, None)
        entry = self.refresh.get(token)
        if entry is not None:
            self.revoked_families.add(entry["family"])
        return web.Response(status=200)

    async def _me(self, request: web.Request) -> web.Response:
        user = self._caller(request)
        assert user is not None
        return web.json_response(self._user_json(user))

    async def _items(self, request: web.Request) -> web.Response:
        ids = request.query.get("ids")
        if ids:
            found = [self.items[i] for i in ids.split(",") if i in self.items]
        else:
            q = request.query.get("q", "").lower()
            found = [item for item in self.items.values() if q in item["title"].lower()]
        return web.json_response({"items": found, "next_cursor": None})

    async def _item(self, request: web.Request) -> web.Response:
        item = self.items.get(request.match_info["id"])
        if item is None:
            return problem(404, "item_not_found", "There is no such item")
        return web.json_response(item)

    async def _methods(self, request: web.Request) -> web.Response:
        user = self._caller(request)
        assert user is not None
        mine = [m for m in self.methods.values() if m["user_id"] == user.id]
        return web.json_response({"items": mine, "next_cursor": None})

    async def _add_method(self, request: web.Request) -> web.Response:
        user = self._caller(request)
        assert user is not None
        data = await request.json()
        if data["card_number"] != "4242424242424242":
            return problem(
                422,
                "invalid_card_number",
                "The card number is not valid",
                errors=[{"field": "card_number", "message": "fails the Luhn check"}],
            )
        method = {
            "id": str(uuid.uuid4()),
            "user_id": user.id,
            "brand": "visa",
            "last4": "4242",
            "exp_month": data["exp_month"],
            "exp_year": data["exp_year"],
            "created_at": "2026-11-25T10:00:00Z",
        }
        self.methods[method["id"]] = method
        return web.json_response(method, status=201)

    async def _orders(self, request: web.Request) -> web.Response:
        user = self._caller(request)
        assert user is not None
        mine = [o for o in self.orders.values() if o["user_id"] == user.id]
        return web.json_response({"items": mine, "next_cursor": None})

    async def _create_order(self, request: web.Request) -> web.Response:
        user = self._caller(request)
        assert user is not None
        data = await request.json()
        lines = []
        for line in data["items"]:
            item = self.items[line["item_id"]]
            lines.append(
                {
                    "item_id": item["id"],
                    "title": item["title"],
                    "unit_price": item["price"],
                    "quantity": line["quantity"],
                    "line_total": item["price"] * line["quantity"],
                }
            )
        order = {
            "id": str(uuid.uuid4()),
            "user_id": user.id,
            "status": "pending",
            "status_reason": None,
            "items": lines,
            "total": sum(line["line_total"] for line in lines),
            "currency": "USD",
            "payment_id": None,
            "created_at": "2026-11-25T10:00:00Z",
            "updated_at": "2026-11-25T10:00:00Z",
        }
        self.orders[order["id"]] = order
        return web.json_response(order, status=201)

    async def _order(self, request: web.Request) -> web.Response:
        user = self._caller(request)
        order = self.orders.get(request.match_info["id"])
        if order is None or user is None or order["user_id"] != user.id:
            return problem(404, "order_not_found", "There is no such order")
        return web.json_response(order)

    async def _auctions(self, request: web.Request) -> web.Response:
        if self.auctions is None:
            return problem(503, "service_unavailable", "No replica of auctions is available")
        status = request.query.get("status")
        bidder = request.query.get("bidder_id")
        caller = self._caller(request)
        if bidder is not None and (caller is None or caller.id != bidder):
            return problem(403, "bidder_filter_forbidden", "Not your bids")
        items = []
        for auction in self.auctions:
            if status and auction["status"] != status:
                continue
            shown = {k: v for k, v in auction.items() if k not in ("bidders", "standings")}
            if bidder is not None:
                if bidder not in auction.get("bidders", []):
                    continue
                shown["bidder_standing"] = auction["standings"][bidder]
            items.append(shown)
        return web.json_response({"items": items, "next_cursor": None})
