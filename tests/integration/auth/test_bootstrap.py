"""The first admin comes from BAZAAR_BOOTSTRAP_ADMIN_*, once, however many replicas start."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from sqlalchemy import func, select
from sqlalchemy.engine import URL

from bazaar.auth.models import SigningKey, User
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from tests.integration.auth.support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PASSWORD,
    Auth,
    auth_settings,
    running_auth,
)


async def test_the_bootstrap_admin_logs_in_as_admin(auth: Auth) -> None:
    admin = await auth.admin_token()

    me = await auth.me(admin)

    assert me.status_code == 200
    assert me.json()["email"] == ADMIN_EMAIL
    assert me.json()["roles"] == ["admin", "customer"]


async def test_replicas_starting_together_make_one_admin_and_one_key(
    auth_database: URL, platform_settings: PlatformSettings
) -> None:
    settings = auth_settings(auth_database)
    async with AsyncExitStack() as stack:
        replicas = await asyncio.gather(
            *(
                stack.enter_async_context(running_auth(settings, platform_settings))
                for _ in range(4)
            )
        )

        async with transaction(replicas[0].sessions) as session:
            admins = await session.scalar(
                select(func.count()).where(User.roles.contains(["admin"]))
            )
            keys = await session.scalar(select(func.count()).select_from(SigningKey))
        assert admins == 1
        assert keys == 1
        kids = {tuple(await replica.kids()) for replica in replicas}
        assert len(kids) == 1


async def test_no_second_admin_once_one_exists(
    auth: Auth, auth_database: URL, platform_settings: PlatformSettings
) -> None:
    settings = auth_settings(
        auth_database,
        bootstrap_admin_email="second@example.com",
        bootstrap_admin_password=ADMIN_PASSWORD,
    )

    async with running_auth(settings, platform_settings) as restarted:
        response = await restarted.login_response("second@example.com", ADMIN_PASSWORD)

    assert response.status_code == 400


async def test_an_existing_account_is_not_promoted(
    auth_database: URL, platform_settings: PlatformSettings
) -> None:
    settings = auth_settings(auth_database, bootstrap_admin_email=None)
    async with running_auth(settings, platform_settings) as first:
        await first.register(ADMIN_EMAIL, PASSWORD)

    promoting = auth_settings(auth_database)
    async with running_auth(promoting, platform_settings) as second:
        tokens = await second.login(ADMIN_EMAIL, PASSWORD)
        me = await second.me(tokens["access_token"])
        assert me.json()["roles"] == ["customer"]
        assert (await second.login_response(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 400
