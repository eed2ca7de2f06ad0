"""The end-to-end tier: one running stack for the session, and clients of its gateway.

The stack is the real thing (``bazaar.stack.supervisor.Stack``): every service as its
own process, the gateway in front, the payment sandbox, a tansu broker. PostgreSQL is
the machine's when ``BAZAAR_TEST_DATABASE_URL`` is set (databases named
``bze2e_<run>_<service>``, dropped at the end), else an embedded server in a
temporary data directory. Set ``BAZAAR_E2E_LOGS=1`` to see every process's log lines
(they are always kept: ``stack.replica("catalog").recent``).

Fixtures for tests::

    stack          the running Stack (session): gateway_url, replicas(), kill(), …
    gateway        httpx.AsyncClient with base_url = the gateway (session)
    admin          an E2EUser holding the bootstrap admin's token (renewed as needed)
    make_user      await make_user("seller") → a new registered E2EUser with those roles
    seller, customer  a fresh user of that role (per test)

An :class:`E2EUser` has ``id``, ``email``, ``password``, ``roles``, ``token`` and
``headers`` (the ``Authorization`` header to send).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bazaar.stack.console import ConsoleOutput, QuietOutput
from bazaar.stack.services import SERVICES
from bazaar.stack.supervisor import Stack

ADMIN_EMAIL = "admin@bazaar.example.com"
ADMIN_PASSWORD = "e2e-admin-password"
USER_PASSWORD = "e2e-user-password"
# Replicas of the session stack: two of catalog and of auctions, so balancing, failover,
# bids meeting from two replicas and streams across replicas are exercised.
E2E_REPLICAS = {"catalog": 2, "auctions": 2}


def small_pools(size: int = 4) -> dict[str, str]:
    """Database pools small enough that the test stacks fit in a PostgreSQL of 100
    connections (CI's), next to the tests' own connections."""
    pools = {f"{spec.env_prefix}DATABASE_POOL_SIZE": str(size) for spec in SERVICES}
    # Auctions' bid path has a pool of its own (one connection per busy auction at a time).
    pools["BAZAAR_AUCTIONS_BID_POOL_SIZE"] = str(size)
    return pools


@dataclass
class E2EUser:
    id: str
    email: str
    password: str
    roles: list[str]
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@bazaar.example.com"


async def login(gateway: httpx.AsyncClient, email: str, password: str) -> str:
    """An access token for ``email`` (password grant, through the gateway)."""
    response = await gateway.post(
        "/api/auth/token",
        data={"grant_type": "password", "username": email, "password": password},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def register(
    gateway: httpx.AsyncClient,
    *,
    email: str | None = None,
    password: str = USER_PASSWORD,
    display_name: str = "E2E User",
) -> dict[str, Any]:
    """Register a user through the gateway; its JSON (``id``, ``email``, ``roles``, …)."""
    response = await gateway.post(
        "/api/auth/register",
        json={"email": email or unique_email(), "password": password, "display_name": display_name},
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def create_user(
    gateway: httpx.AsyncClient,
    admin: E2EUser,
    roles: Sequence[str] = ("customer",),
    *,
    email: str | None = None,
    password: str = USER_PASSWORD,
) -> E2EUser:
    """Register a user, give it ``roles`` (as the admin) and log it in."""
    user = await register(gateway, email=email, password=password)
    wanted = sorted({"customer", *roles})
    if wanted != sorted(user["roles"]):
        response = await gateway.put(
            f"/api/auth/users/{user['id']}/roles", json={"roles": wanted}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
    token = await login(gateway, user["email"], password)
    return E2EUser(user["id"], user["email"], password, wanted, token)


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The platform, running for the whole test session."""
    external = os.environ.get("BAZAAR_TEST_DATABASE_URL")
    running = Stack(
        tmp_path_factory.mktemp("stack"),
        port=0,
        psp_port=0,
        replicas=E2E_REPLICAS,
        postgres_url=external,
        database_prefix=f"bze2e_{uuid.uuid4().hex[:6]}" if external else None,
        env={
            "BAZAAR_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
            "BAZAAR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            # The sandbox's late-answer card: longer than payments' provider deadline (5 s),
            # short enough for a test run.
            "BAZAAR_PSP_SANDBOX_SLOW_CARD_DELAY_SECONDS": "8",
            # Still argon2id, at OWASP's minimum cost: tests register hundreds of users.
            "BAZAAR_AUTH_ARGON2_TIME_COST": "2",
            "BAZAAR_AUTH_ARGON2_MEMORY_COST_KIB": "19456",
            "BAZAAR_AUTH_ARGON2_PARALLELISM": "1",
            **small_pools(),
            # Support calls an order stuck after seconds, not minutes, so a test can see it.
            "BAZAAR_SUPPORT_ORDER_DEADLINE_SECONDS": "4",
            "BAZAAR_SUPPORT_PROBLEMS_REFRESH_SECONDS": "0.5",
        },
        output=ConsoleOutput() if os.environ.get("BAZAAR_E2E_LOGS") else QuietOutput(),
    )
    try:
        await running.start()
        yield running
    finally:
        await running.stop()
        if external and running.admin_url is not None:
            await running.drop_databases()


@pytest.fixture(scope="session")
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=15.0) as client:
        yield client


class _AdminSession:
    """The bootstrap admin's login, renewed before its access token (15 min) runs out."""

    RENEW_AFTER_SECONDS = 600.0

    def __init__(self, gateway: httpx.AsyncClient) -> None:
        self.gateway = gateway
        self.user: E2EUser | None = None
        self.logged_in_at = 0.0

    async def get(self) -> E2EUser:
        if self.user is None or time.monotonic() - self.logged_in_at > self.RENEW_AFTER_SECONDS:
            token = await login(self.gateway, ADMIN_EMAIL, ADMIN_PASSWORD)
            me = await self.gateway.get(
                "/api/auth/me", headers={"Authorization": f"Bearer {token}"}
            )
            assert me.status_code == 200, me.text
            body = me.json()
            self.user = E2EUser(body["id"], ADMIN_EMAIL, ADMIN_PASSWORD, body["roles"], token)
            self.logged_in_at = time.monotonic()
        return self.user


@pytest.fixture(scope="session")
def _admin_session(gateway: httpx.AsyncClient) -> _AdminSession:
    return _AdminSession(gateway)


@pytest.fixture
async def admin(_admin_session: _AdminSession) -> E2EUser:
    """The bootstrap admin, logged in."""
    return await _admin_session.get()


MakeUser = Callable[..., Awaitable[E2EUser]]


@pytest.fixture
def make_user(gateway: httpx.AsyncClient, admin: E2EUser) -> MakeUser:
    """``await make_user("seller", "support")``: a new user holding those roles, logged in."""

    async def make(*roles: str, email: str | None = None) -> E2EUser:
        return await create_user(gateway, admin, roles or ("customer",), email=email)

    return make


@pytest.fixture
async def seller(make_user: MakeUser) -> E2EUser:
    return await make_user("seller")


@pytest.fixture
async def customer(make_user: MakeUser) -> E2EUser:
    return await make_user("customer")
