"""Anyone registers an account; emails are unique whatever their case; it is announced."""

from __future__ import annotations

import uuid

from bazaar.contracts import auth as contract
from bazaar.kit.testing import read_topic
from tests.integration.auth.support import PASSWORD, Auth


async def test_register_answers_the_new_customer(auth: Auth) -> None:
    response = await auth.http.post(
        "/api/auth/register",
        json={"email": "Ada.Lovelace@Example.COM", "password": PASSWORD, "display_name": " Ada "},
    )

    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) == {"id", "email", "display_name", "roles", "created_at"}
    uuid.UUID(user["id"])
    assert user["email"] == "ada.lovelace@example.com"
    assert user["display_name"] == "Ada"
    assert user["roles"] == ["customer"]
    assert user["created_at"].endswith("Z")


async def test_an_email_is_taken_whatever_its_case(auth: Auth) -> None:
    await auth.register("grace@example.com")

    response = await auth.http.post(
        "/api/auth/register",
        json={"email": "GRACE@example.com", "password": PASSWORD, "display_name": "Impostor"},
    )

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "email_taken"


async def test_a_short_password_or_a_bad_email_is_refused(auth: Auth) -> None:
    short = await auth.http.post(
        "/api/auth/register",
        json={"email": "short@example.com", "password": "1234567", "display_name": "S"},
    )
    bad_email = await auth.http.post(
        "/api/auth/register",
        json={"email": "not-an-email", "password": PASSWORD, "display_name": "B"},
    )

    assert short.status_code == 422
    assert [e["field"] for e in short.json()["errors"]] == ["password"]
    assert bad_email.status_code == 422
    assert [e["field"] for e in bad_email.json()["errors"]] == ["email"]
    assert bad_email.headers["content-type"] == "application/problem+json"


async def test_registration_is_announced(auth: Auth) -> None:
    user = await auth.register()

    seen = await read_topic(
        auth.platform,
        contract.TOPIC,
        until=lambda envelopes: any(e.subject == user["id"] for e in envelopes),
    )

    event = next(e for e in seen if e.subject == user["id"])
    assert event.type == contract.UserRegistered.TYPE
    registered = contract.UserRegistered.model_validate(event.data)
    assert str(registered.user_id) == user["id"]
    assert registered.email == user["email"]
    assert registered.roles == ["customer"]
