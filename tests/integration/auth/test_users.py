"""Who am I, finding users (support, admin) and setting roles (admin)."""

from __future__ import annotations

import uuid

from bazaar.contracts import auth as contract
from bazaar.kit.testing import read_topic
from tests.integration.auth.support import Auth, bearer, claims_of


async def test_me_is_the_caller(auth: Auth) -> None:
    user, tokens = await auth.new_user(display_name="Me Myself")

    response = await auth.me(tokens["access_token"])

    assert response.status_code == 200
    assert response.json() == user


async def test_me_needs_a_valid_token(auth: Auth) -> None:
    missing = await auth.http.get("/api/auth/me")
    garbage = await auth.http.get("/api/auth/me", headers=bearer("garbage"))
    not_bearer = await auth.http.get("/api/auth/me", headers={"Authorization": "Basic eDp5"})

    for response in (missing, garbage, not_bearer):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert response.json()["code"] == "invalid_token"


async def test_support_finds_users_by_email_prefix_page_by_page(auth: Auth) -> None:
    tag = uuid.uuid4().hex[:6]
    emails = sorted(f"{tag}-{n}@example.com" for n in range(5))
    for email in emails:
        await auth.register(email.upper())
    await auth.register(f"other-{tag}@example.com")
    support = await make_user_with_roles(auth, ["support"])

    first = await auth.http.get(
        "/api/auth/users", params={"email": tag.upper(), "limit": 3}, headers=bearer(support)
    )
    assert first.status_code == 200, first.text
    second = await auth.http.get(
        "/api/auth/users",
        params={"email": tag, "limit": 3, "cursor": first.json()["next_cursor"]},
        headers=bearer(support),
    )
    exact = await auth.http.get(
        "/api/auth/users", params={"email": emails[2]}, headers=bearer(support)
    )

    assert [u["email"] for u in first.json()["items"]] == emails[:3]
    assert first.json()["next_cursor"]
    assert [u["email"] for u in second.json()["items"]] == emails[3:]
    assert second.json()["next_cursor"] is None
    assert [u["email"] for u in exact.json()["items"]] == [emails[2]]


async def test_a_prefix_is_matched_literally(auth: Auth) -> None:
    await auth.register("under_score@example.com")
    await auth.register("underXscore@example.com")
    admin = await auth.admin_token()

    response = await auth.http.get(
        "/api/auth/users", params={"email": "under_"}, headers=bearer(admin)
    )

    assert [u["email"] for u in response.json()["items"]] == ["under_score@example.com"]


async def test_finding_users_is_for_support_and_admins(auth: Auth) -> None:
    _, customer = await auth.new_user()

    as_customer = await auth.http.get("/api/auth/users", headers=bearer(customer["access_token"]))
    anonymous = await auth.http.get("/api/auth/users")
    bad_limit = await auth.http.get(
        "/api/auth/users", params={"limit": 0}, headers=bearer(await auth.admin_token())
    )
    bad_cursor = await auth.http.get(
        "/api/auth/users", params={"cursor": "!!"}, headers=bearer(await auth.admin_token())
    )

    assert as_customer.status_code == 403
    assert as_customer.json()["code"] == "forbidden"
    assert anonymous.status_code == 401
    assert bad_limit.status_code == 422
    assert bad_cursor.status_code == 422


async def test_an_admin_sets_roles_and_customer_stays(auth: Auth) -> None:
    user, _ = await auth.new_user()
    admin = await auth.admin_token()

    response = await auth.http.put(
        f"/api/auth/users/{user['id']}/roles", json={"roles": ["seller"]}, headers=bearer(admin)
    )

    assert response.status_code == 200, response.text
    assert response.json()["roles"] == ["customer", "seller"]
    tokens = await auth.login(user["email"])
    assert claims_of(tokens["access_token"])["roles"] == ["customer", "seller"]
    seen = await read_topic(
        auth.platform,
        contract.TOPIC,
        until=lambda envelopes: any(e.type == contract.UserRolesChanged.TYPE for e in envelopes),
    )
    changed = next(e for e in seen if e.type == contract.UserRolesChanged.TYPE)
    assert changed.data["user_id"] == user["id"]
    assert changed.data["roles"] == ["customer", "seller"]
    assert changed.data["changed_by"] == claims_of(admin)["sub"]


async def test_roles_are_set_by_admins_only_on_real_users_with_real_roles(auth: Auth) -> None:
    user, tokens = await auth.new_user()
    support = await make_user_with_roles(auth, ["support"])
    admin = await auth.admin_token()
    url = f"/api/auth/users/{user['id']}/roles"

    by_user = await auth.http.put(
        url, json={"roles": ["admin"]}, headers=bearer(tokens["access_token"])
    )
    by_support = await auth.http.put(url, json={"roles": ["admin"]}, headers=bearer(support))
    anonymous = await auth.http.put(url, json={"roles": ["admin"]})
    unknown_role = await auth.http.put(url, json={"roles": ["wizard"]}, headers=bearer(admin))
    unknown_user = await auth.http.put(
        f"/api/auth/users/{uuid.uuid4()}/roles", json={"roles": ["seller"]}, headers=bearer(admin)
    )

    assert by_user.status_code == 403
    assert by_support.status_code == 403
    assert anonymous.status_code == 401
    assert unknown_role.status_code == 422
    assert unknown_user.status_code == 404
    assert unknown_user.json()["code"] == "user_not_found"


async def test_a_role_taken_away_holds_at_once(auth: Auth) -> None:
    user, _ = await auth.new_user()
    admin = await auth.admin_token()
    url = f"/api/auth/users/{user['id']}/roles"
    await auth.http.put(url, json={"roles": ["seller"]}, headers=bearer(admin))
    seller_tokens = await auth.login(user["email"])

    await auth.http.put(url, json={"roles": []}, headers=bearer(admin))

    assert (await auth.me(seller_tokens["access_token"])).status_code == 401
    refreshed = await auth.refresh(seller_tokens["refresh_token"])
    assert refreshed.status_code == 200
    assert claims_of(refreshed.json()["access_token"])["roles"] == ["customer"]


async def test_the_last_admin_keeps_the_admin_role(auth: Auth) -> None:
    admin = await auth.admin_token()
    me = claims_of(admin)["sub"]

    response = await auth.http.put(
        f"/api/auth/users/{me}/roles", json={"roles": ["customer"]}, headers=bearer(admin)
    )

    assert response.status_code == 409
    assert response.json()["code"] == "last_admin"


async def make_user_with_roles(auth: Auth, roles: list[str]) -> str:
    """A new user holding ``roles``; their access token."""
    user = await auth.register()
    admin = await auth.admin_token()
    response = await auth.http.put(
        f"/api/auth/users/{user['id']}/roles", json={"roles": roles}, headers=bearer(admin)
    )
    assert response.status_code == 200, response.text
    return str((await auth.login(user["email"]))["access_token"])
