"""The portal's own logic through HTTP, without a browser: session cookie, CSRF, problems,
silent token refresh, checkout and the card form."""

from __future__ import annotations

import asyncio
import io
import uuid

import httpx

from tests.integration.portal.conftest import csrf_of, idempotency_key_of, sign_in
from tests.integration.portal.fake_platform import FakePlatform

EMAIL = "ada@bazaar.example.com"


def session_cookie_header(response: httpx.Response) -> str:
    cookies = [value for name, value in response.headers.multi_items() if name == "set-cookie"]
    assert cookies, "no session cookie was set"
    return cookies[-1]


async def test_signing_in_keeps_the_tokens_in_an_encrypted_httponly_lax_cookie(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL, display_name="Ada")
    response = await sign_in(portal, EMAIL)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = session_cookie_header(response)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    token = next(iter(fake.access))
    assert token.split(".")[1] not in cookie, "the access token must not be readable"
    home = await portal.get("/")
    assert "Ada" in home.text
    assert "Sign out" in home.text


async def test_the_cookie_is_secure_when_the_browser_came_over_https(
    portal: httpx.AsyncClient,
) -> None:
    response = await portal.get("/sign-in", headers={"X-Forwarded-Proto": "https"})
    assert "; Secure" in session_cookie_header(response)


async def test_a_tampered_cookie_is_a_new_anonymous_session(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    await sign_in(portal, EMAIL)
    value = portal.cookies["bazaar_session"]
    portal.cookies.clear()
    portal.cookies.set("bazaar_session", value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB"))
    page = await portal.get("/")
    assert "Sign in" in page.text and "Sign out" not in page.text


async def test_a_post_without_the_sessions_csrf_token_is_refused(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    await portal.get("/sign-in")
    missing = await portal.post("/sign-in", data={"email": EMAIL, "password": "password-123"})
    assert missing.status_code == 403
    assert "This form has expired" in missing.text
    wrong = await portal.post(
        "/sign-in", data={"email": EMAIL, "password": "password-123", "csrf_token": "forged"}
    )
    assert wrong.status_code == 403
    assert not [r for r in fake.requests if r[1] == "/api/auth/token"]


async def test_htmx_requests_prove_themselves_with_the_csrf_header(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    item = fake.add_item("Teapot")
    page = await portal.get(f"/catalog/{item['id']}")
    token = csrf_of(page.text)
    added = await portal.post(
        "/basket/items",
        data={"item_id": item["id"], "quantity": "2"},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
    )
    assert added.status_code == 200
    assert "Added to your basket (2 in it)" in added.text
    assert 'id="basket-count"' in added.text and 'hx-swap-oob="true"' in added.text


async def test_signing_in_issues_a_new_csrf_token(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    before = csrf_of((await portal.get("/sign-in")).text)
    await sign_in(portal, EMAIL)
    after = csrf_of((await portal.get("/")).text)
    assert before != after


async def test_a_refused_sign_in_shows_what_auth_said(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    response = await sign_in(portal, EMAIL, "not-the-password")
    assert response.status_code == 200
    assert "Wrong email or password" in response.text
    assert 'role="alert"' in response.text
    assert "not-the-password" not in response.text


async def test_a_problem_shows_its_detail_and_each_field_error_beside_its_field(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    page = await portal.get("/register")
    taken = await portal.post(
        "/register",
        data={
            "email": EMAIL,
            "display_name": "Ada",
            "password": "password-123",
            "password_confirm": "password-123",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert "An account with this email already exists" in taken.text
    assert 'data-code="email_taken"' in taken.text
    invalid = await portal.post(
        "/register",
        data={
            "email": "not-an-email",
            "display_name": "Ada",
            "password": "password-123",
            "password_confirm": "password-123",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert 'id="f-email-error">value is not a valid email address' in invalid.text
    assert 'aria-describedby="f-email-error" aria-invalid="true"' in invalid.text


async def test_a_refused_card_is_explained_and_its_number_is_neither_shown_nor_logged(
    portal_logs: io.StringIO, portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    await sign_in(portal, EMAIL)
    page = await portal.get("/payments/methods")
    number = "4000 0000 0000 0002"
    refused = await portal.post(
        "/payments/methods",
        data={
            "card_number": number,
            "exp_month": "12",
            "exp_year": "2031",
            "cvc": "123",
            "csrf_token": csrf_of(page.text),
            "idempotency_key": idempotency_key_of(page.text),
        },
    )
    assert 'id="f-card_number-error">fails the Luhn check' in refused.text
    assert "4000000000000002" not in refused.text and number not in refused.text
    assert 'value="12"' in refused.text  # the expiry is kept, the number and CVC are not
    assert b"4000000000000002" in fake.bodies_sent_to("/api/payments/methods")[0]
    saved = await portal.post(
        "/payments/methods",
        data={
            "card_number": "4242424242424242",
            "exp_month": "12",
            "exp_year": "2031",
            "cvc": "123",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert saved.status_code == 303
    logs = portal_logs.getvalue()
    assert "POST /api/payments/methods" in logs  # the calls were logged (the fake's access log)
    for secret in ("4000000000000002", "4000 0000 0000 0002", "4242424242424242"):
        assert secret not in logs


async def test_an_access_token_near_expiry_is_renewed_without_the_user_noticing(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.access_ttl = 30  # inside the portal's 60 s margin: every request renews
    fake.add_user(EMAIL)
    await sign_in(portal, EMAIL)  # its call of /api/auth/me renews once already
    assert fake.refresh_grants == 1
    for expected in (2, 3, 4):
        page = await portal.get("/orders")
        assert page.status_code == 200, page.text
        assert "My orders" in page.text
        assert fake.refresh_grants == expected
    assert not fake.revoked_families


async def test_a_401_is_answered_by_one_renewal_and_the_call_again(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    await sign_in(portal, EMAIL)
    fake.revoke_access_of(EMAIL)  # e.g. roles changed: live access tokens are revoked
    page = await portal.get("/orders")
    assert page.status_code == 200
    assert fake.refresh_grants == 1


async def test_concurrent_requests_of_one_session_share_one_renewal(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.access_ttl = 30
    fake.add_user(EMAIL)
    await sign_in(portal, EMAIL)
    before = fake.refresh_grants
    pages = await asyncio.gather(*(portal.get("/orders") for _ in range(6)))
    assert [page.status_code for page in pages] == [200] * 6
    assert fake.refresh_grants == before + 1, "a refresh token must be spent once"
    assert not fake.revoked_families


async def test_a_session_whose_renewal_is_refused_asks_to_sign_in_again(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    await sign_in(portal, EMAIL)
    fake.revoked_families.update(entry["family"] for entry in fake.refresh.values())
    fake.revoke_access_of(EMAIL)
    page = await portal.get("/orders?cursor=abc")
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=%2Forders%3Fcursor%3Dabc"
    sign_in_page = await portal.get(page.headers["location"])
    assert "Your session has ended" in sign_in_page.text


async def test_pages_for_signed_in_users_lead_to_sign_in_and_back(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    page = await portal.get("/orders")
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=%2Forders"
    fake.add_user(EMAIL)
    form = await portal.get(page.headers["location"])
    assert 'name="next" value="/orders"' in form.text
    signed = await portal.post(
        "/sign-in",
        data={
            "email": EMAIL,
            "password": "password-123",
            "next": "/orders",
            "csrf_token": csrf_of(form.text),
        },
    )
    assert signed.headers["location"] == "/orders"


async def test_sign_in_never_redirects_off_site(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    form = await portal.get("/sign-in")
    signed = await portal.post(
        "/sign-in",
        data={
            "email": EMAIL,
            "password": "password-123",
            "next": "//evil.example.com/",
            "csrf_token": csrf_of(form.text),
        },
    )
    assert signed.headers["location"] == "/"


async def test_checkout_places_one_order_with_the_key_the_basket_page_carried(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    item = fake.add_item("Teapot", price=1999)
    fake.add_user(EMAIL)
    await sign_in(portal, EMAIL)
    page = await portal.get("/payments/methods")
    await portal.post(
        "/payments/methods",
        data={
            "card_number": "4242 4242 4242 4242",
            "exp_month": "12",
            "exp_year": "2031",
            "cvc": "123",
            "csrf_token": csrf_of(page.text),
        },
    )
    await portal.post(
        "/basket/items",
        data={"item_id": item["id"], "quantity": "2", "csrf_token": csrf_of(page.text)},
    )
    basket = await portal.get("/basket")
    assert "$39.98" in basket.text
    key = idempotency_key_of(basket.text)
    method = next(iter(fake.methods))
    placed = await portal.post(
        "/checkout",
        data={
            "payment_method_id": method,
            "idempotency_key": key,
            "csrf_token": csrf_of(basket.text),
        },
    )
    assert placed.status_code == 303
    order_id = placed.headers["location"].removeprefix("/orders/")
    assert uuid.UUID(order_id)
    sent = [headers for _, path, _, headers in fake.requests if path == "/api/orders"]
    assert sent[-1]["Idempotency-Key"] == key
    order = await portal.get(placed.headers["location"])
    assert "Pending" in order.text
    assert f'hx-get="/orders/{order_id}/status" hx-trigger="every 1s"' in order.text
    assert (await portal.get("/basket")).text.count("Your basket is empty") == 1


async def test_support_pages_are_403_for_customers(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    await sign_in(portal, EMAIL)
    page = await portal.get("/support")
    assert page.status_code == 403
    assert "support and admin staff only" in page.text


async def test_an_api_404_is_a_404_page_with_the_apis_detail(
    portal: httpx.AsyncClient,
) -> None:
    page = await portal.get(f"/catalog/{uuid.uuid4()}")
    assert page.status_code == 404
    assert "There is no such item" in page.text
    nowhere = await portal.get("/no/such/page")
    assert nowhere.status_code == 404
    assert "There is no page at this address" in nowhere.text


async def test_the_front_page_shows_what_it_can_when_a_service_is_down(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_item("Teapot")
    page = await portal.get("/")
    assert page.status_code == 200
    assert "Teapot" in page.text
    assert "Auctions cannot be shown right now: No replica of auctions is available" in page.text


async def test_pages_carry_a_strict_content_security_policy(portal: httpx.AsyncClient) -> None:
    page = await portal.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    static = await portal.get("/static/htmx.min.js")
    assert static.status_code == 200
    assert "set-cookie" not in static.headers


async def test_sign_in_tells_auth_the_browsers_address_not_the_portals(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    fake.add_user(EMAIL)
    form = await portal.get("/sign-in")
    await portal.post(
        "/sign-in",
        data={"email": EMAIL, "password": "password-123", "csrf_token": csrf_of(form.text)},
        headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"},
    )
    sent = [headers for _, path, _, headers in fake.requests if path == "/api/auth/token"]
    assert sent[-1]["X-Forwarded-For"] == "203.0.113.9"


def an_auction(title: str, status: str, **fields: object) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "title": title,
        "status": status,
        "currency": "USD",
        "starting_price": 1000,
        "min_increment": 100,
        "current_price": 2500,
        "bid_count": 3,
        "ends_at": "2026-11-30T10:00:00Z",
        "winner_id": None,
        "final_price": None,
        **fields,
    }


async def test_my_bids_lists_the_auctions_i_bid_on_through_the_bidder_filter(
    portal: httpx.AsyncClient, fake: FakePlatform
) -> None:
    me = fake.add_user(EMAIL)
    other = str(uuid.uuid4())

    def standing(best: int, leading: bool) -> dict[str, object]:
        return {
            "bidder_id": me.id,
            "best_amount": best,
            "bids": 1,
            "leading": leading,
            "last_bid_at": "2026-11-25T10:00:00Z",
        }

    fake.auctions = [
        an_auction("Gramophone", "open", bidders=[me.id], standings={me.id: standing(2500, True)}),
        an_auction("Sextant", "open", bidders=[me.id], standings={me.id: standing(1800, False)}),
        an_auction("Not mine", "open", bidders=[other], standings={}),
        an_auction(
            "Barometer",
            "settled",
            winner_id=me.id,
            final_price=4200,
            bidders=[me.id],
            standings={me.id: standing(4200, True)},
        ),
    ]
    await sign_in(portal, EMAIL)
    page = await portal.get("/auctions/my-bids")
    assert page.status_code == 200, page.text
    assert "Gramophone" in page.text and "Sextant" in page.text and "Barometer" in page.text
    assert "Not mine" not in page.text
    assert "$18.00" in page.text and "$42.00" in page.text
    assert page.text.count("Leading") == 1 and page.text.count("Outbid") == 1
    # One filtered list per section, not a scan of every open auction's bids.
    asked = [r for r in fake.requests if r[1].startswith("/api/auctions")]
    assert {r[1] for r in asked} == {"/api/auctions"}
