"""What people do in the portal, in a real browser against the running platform."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from bazaar.kit.testing import wait_for
from bazaar.stack.supervisor import Stack
from tests.e2e.conftest import USER_PASSWORD, E2EUser
from tests.e2e.portal.conftest import PHONE, MakeUser, Person, portal_log_lines

pytestmark = pytest.mark.e2e

OpenBrowser = Callable[..., Awaitable[Person]]
APPROVED = "4242424242424242"
DECLINED = "4000000000000002"
NEW_PASSWORD = re.compile(r"^Password(?! again)")


async def list_item(
    api: httpx.AsyncClient, seller: E2EUser, title: str, price: int, stock: int | None = 50
) -> dict[str, Any]:
    response = await api.post(
        "/api/catalog/items",
        json={
            "kind": "good",
            "title": title,
            "description": f"{title}, made with care.\nShips in two days.",
            "price": price,
            "currency": "USD",
            "stock": stock,
        },
        headers=seller.headers,
    )
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


async def add_card(api: httpx.AsyncClient, user: E2EUser, number: str) -> str:
    response = await api.post(
        "/api/payments/methods",
        json={"card_number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        headers={**user.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def add_card_in_portal(person: Person, number: str) -> None:
    await person.goto("/payments/methods")
    page = person.page
    await page.get_by_label("Card number").fill(number)
    await page.get_by_label("Expiry month").fill("12")
    await page.get_by_label("Expiry year").fill("2031")
    await page.get_by_label("Security code").fill("123")
    await page.get_by_role("button", name="Save card").click()
    await expect(page.get_by_text(f"ending in {number[-4:]} is saved")).to_be_visible()


async def add_to_basket(person: Person, item: dict[str, Any], quantity: int) -> None:
    await person.goto(f"/catalog/{item['id']}")
    await person.page.get_by_label("Quantity").fill(str(quantity))
    await person.page.get_by_role("button", name="Add to basket").click()
    await expect(person.page.locator("#basket-message")).to_contain_text("Added to your basket")


# --- what works with auth and catalog alone ------------------------------------------------


async def test_a_customer_gets_no_support_page(
    portal_stack: Stack, make_person: MakeUser, open_browser: OpenBrowser
) -> None:
    customer = await make_person("customer")
    person = await open_browser()
    await person.sign_in(customer.email)
    await expect(person.page.get_by_role("link", name="Support")).to_have_count(0)
    person.expected_statuses.add(403)
    response = await person.goto("/support")
    assert response.status == 403
    await expect(person.page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await expect(person.page.get_by_text("support and admin staff only")).to_be_visible()
    await person.screenshot("forbidden")
    response = await person.goto("/support/problems")
    assert response.status == 403


async def test_browsing_searching_and_filling_the_basket(
    portal_stack: Stack,
    api: httpx.AsyncClient,
    make_person: MakeUser,
    open_browser: OpenBrowser,
) -> None:
    seller = await make_person("seller")
    word = f"lantern{uuid.uuid4().hex[:6]}"
    lantern = await list_item(api, seller, f"Brass {word}", 4250)
    await list_item(api, seller, f"Paper {word}", 990)
    await list_item(api, seller, f"Copper kettle {uuid.uuid4().hex[:6]}", 3100)
    person = await open_browser()
    await person.goto("/")
    await expect(person.page.get_by_role("heading", name="New in the catalog")).to_be_visible()
    await person.screenshot("home")

    await person.goto("/catalog")
    await person.page.get_by_label("Search").fill(word)
    # htmx: the results change as you type and the address follows, without a reload.
    results = person.page.locator("#catalog-results")
    await expect(results.get_by_role("listitem")).to_have_count(2)
    await expect(person.page).to_have_url(re.compile(rf"q={word}"))
    await person.screenshot("catalog")

    await results.get_by_role("link", name=f"Brass {word}").click()
    await expect(person.page.get_by_role("heading", name=f"Brass {word}")).to_be_visible()
    await person.page.get_by_label("Quantity").fill("2")
    await person.page.get_by_role("button", name="Add to basket").click()
    await expect(person.page.locator("#basket-count")).to_have_text("2")
    await person.screenshot("item")

    await person.goto("/basket")
    await expect(person.page.get_by_test_id("basket-total")).to_have_text("$85.00")
    await expect(person.page.get_by_role("link", name="Sign in to check out")).to_be_visible()
    await person.screenshot("basket-anonymous")
    assert lantern["id"]

    phone = await open_browser(viewport=PHONE)
    await phone.goto(f"/catalog?q={word}")
    await expect(phone.page.locator("#catalog-results").get_by_role("listitem")).to_have_count(2)
    await phone.screenshot("catalog-phone")


async def test_registration_explains_problems_then_signs_the_new_user_in(
    portal_stack: Stack, make_person: MakeUser, open_browser: OpenBrowser
) -> None:
    existing = await make_person("customer")
    person = await open_browser()
    page = person.page
    await person.goto("/register")
    await page.get_by_label("Your name").fill("Grace")
    await page.get_by_label("Email").fill(existing.email)
    await page.get_by_label(NEW_PASSWORD).fill("long-enough-password")
    await page.get_by_label("Password again").fill("long-enough-password")
    await page.get_by_role("button", name="Create account").click()
    problem = page.get_by_role("alert")
    await expect(problem).to_contain_text("already")  # the API's own detail (email_taken)
    await person.screenshot("register-problem")

    email = f"grace-{uuid.uuid4().hex[:8]}@bazaar.example.com"
    await page.get_by_label("Email").fill(email)
    await page.get_by_label(NEW_PASSWORD).fill("long-enough-password")
    await page.get_by_label("Password again").fill("long-enough-password")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_text("Welcome to Bazaar, Grace!")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    await person.sign_in(email, "long-enough-password")
    await person.goto("/sign-in")
    await person.screenshot("sign-in")


async def test_a_seller_lists_an_item_through_the_portal(
    portal_stack: Stack, make_person: MakeUser, open_browser: OpenBrowser
) -> None:
    seller = await make_person("seller")
    person = await open_browser()
    await person.sign_in(seller.email)
    await person.page.get_by_role("link", name="Selling").click()
    await person.page.get_by_role("link", name="List an item").click()
    page = person.page
    title = f"Handmade bowl {uuid.uuid4().hex[:6]}"
    await page.get_by_label("Title").fill(title)
    await page.get_by_label("Description").fill("Stoneware, 18 cm.")
    await page.get_by_label("Price").fill("abc")
    await page.get_by_role("button", name="List it").click()
    await expect(page.locator("#f-price-error")).to_have_text("Enter an amount like 12.50.")
    await person.screenshot("sell-new-item")
    await page.get_by_label("Price").fill("24.90")
    await page.get_by_label("Stock").fill("3")
    await page.get_by_role("button", name="List it").click()
    await expect(page.get_by_role("heading", name=title)).to_be_visible()
    await expect(page.get_by_text("$24.90")).to_be_visible()
    await person.goto("/sell/items")
    await expect(page.get_by_role("link", name=title)).to_be_visible()


# --- buying: orders and payments -----------------------------------------------------------


async def test_a_new_customer_adds_the_4242_card_buys_two_items_and_sees_the_order_confirmed(
    portal_stack: Stack,
    api: httpx.AsyncClient,
    make_person: MakeUser,
    open_browser: OpenBrowser,
) -> None:
    seller = await make_person("seller")
    lamp = await list_item(api, seller, f"Desk lamp {uuid.uuid4().hex[:6]}", 3450)
    rug = await list_item(api, seller, f"Wool rug {uuid.uuid4().hex[:6]}", 12900)
    person = await open_browser()
    page = person.page
    email = f"buyer-{uuid.uuid4().hex[:8]}@bazaar.example.com"
    await person.goto("/register")
    await page.get_by_label("Your name").fill("Buyer")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label(NEW_PASSWORD).fill(USER_PASSWORD)
    await page.get_by_label("Password again").fill(USER_PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_text("Welcome to Bazaar, Buyer!")).to_be_visible()

    await add_card_in_portal(person, APPROVED)
    await person.screenshot("payment-methods")
    await add_to_basket(person, lamp, 1)
    await add_to_basket(person, rug, 1)
    await person.goto("/basket")
    await expect(page.get_by_test_id("basket-total")).to_have_text("$163.50")
    await person.screenshot("basket")
    await page.get_by_role("button", name="Place order").click()
    await expect(page.get_by_role("heading", name=re.compile("^Order "))).to_be_visible()
    # The page polls while the order is pending: no reload.
    await expect(page.locator(".order-status")).to_have_attribute(
        "data-status", "confirmed", timeout=30_000
    )
    await expect(page.get_by_text("Your order is confirmed and paid.")).to_be_visible()
    await person.screenshot("order-confirmed")
    await person.goto("/orders")
    await expect(page.get_by_text("Confirmed").first).to_be_visible()
    await person.screenshot("orders")
    await person.goto("/payments")
    await expect(page.get_by_text("$163.50")).to_be_visible()
    assert not [line for line in portal_log_lines(portal_stack) if APPROVED in line]


async def test_the_declined_card_shows_the_order_cancelled_with_its_reason(
    portal_stack: Stack,
    api: httpx.AsyncClient,
    make_person: MakeUser,
    open_browser: OpenBrowser,
) -> None:
    seller = await make_person("seller")
    item = await list_item(api, seller, f"Vase {uuid.uuid4().hex[:6]}", 2500)
    customer = await make_person("customer")
    person = await open_browser()
    await person.sign_in(customer.email)
    await add_card_in_portal(person, DECLINED)
    await add_to_basket(person, item, 1)
    await person.goto("/basket")
    await person.page.get_by_role("button", name="Place order").click()
    status = person.page.locator(".order-status")
    await expect(status).to_have_attribute("data-status", "cancelled", timeout=30_000)
    await expect(person.page.locator(".status-reason")).to_have_text(
        "Cancelled because the payment was declined."
    )
    await person.screenshot("order-cancelled")
    assert not [line for line in portal_log_lines(portal_stack) if DECLINED in line]


# --- auctions --------------------------------------------------------------------------------


async def test_two_browsers_bid_on_one_auction_and_each_sees_the_others_bid_live(
    portal_stack: Stack,
    api: httpx.AsyncClient,
    make_person: MakeUser,
    open_browser: OpenBrowser,
) -> None:
    seller = await make_person("seller")
    created = await api.post(
        "/api/auctions",
        json={
            "title": f"Antique clock {uuid.uuid4().hex[:6]}",
            "description": "Wound weekly; keeps good time.",
            "currency": "USD",
            "starting_price": 1000,
            "min_increment": 100,
            "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "soft_close_seconds": 60,
        },
        headers=seller.headers,
    )
    assert created.status_code == 201, created.text
    auction = created.json()
    alice_user, bob_user = await make_person("customer"), await make_person("customer")
    for user in (alice_user, bob_user):
        await add_card(api, user, APPROVED)
    alice, bob = await open_browser(), await open_browser(viewport=PHONE)
    await alice.sign_in(alice_user.email)
    await bob.sign_in(bob_user.email)
    for person in (alice, bob):
        await person.goto(f"/auctions/{auction['id']}")
        await expect(person.page.locator("#live-state")).to_have_attribute("data-state", "live")

    await alice.page.get_by_label(re.compile("^Your bid")).fill("10.00")
    await alice.page.get_by_role("button", name="Place bid").click()
    await expect(alice.page.locator(".bid-result")).to_contain_text("You are the highest bidder")
    # Bob's page did not reload: the bid arrives over the event stream.
    await expect(bob.page.locator("#bid-list li")).to_have_count(1)
    await expect(bob.page.locator("#current-price")).to_have_text("$10.00")
    await expect(bob.page.locator("#min-bid")).to_have_text("at least $11.00")

    await bob.page.get_by_label(re.compile("^Your bid")).fill("12.50")
    await bob.page.get_by_role("button", name="Place bid").click()
    await expect(bob.page.locator(".bid-result")).to_contain_text("You are the highest bidder")
    await expect(bob.page.locator("#bid-list li").first.locator(".who")).to_have_text("You")
    await expect(alice.page.locator("#current-price")).to_have_text("$12.50")
    await expect(alice.page.locator("#bid-list li").first).to_contain_text("$12.50")
    await expect(alice.page.locator("#bid-count")).to_have_text("2")
    await expect(alice.page.locator(".bid-result")).to_contain_text("you are outbid")
    await alice.screenshot("auction-live")
    await bob.screenshot("auction-phone")
    await bob.goto("/auctions/my-bids")
    await expect(bob.page.get_by_text("Leading")).to_be_visible()


# --- support ---------------------------------------------------------------------------------


async def test_support_finds_the_declined_orders_timeline_and_retries_it(
    portal_stack: Stack,
    api: httpx.AsyncClient,
    make_person: MakeUser,
    open_browser: OpenBrowser,
) -> None:
    seller = await make_person("seller")
    item = await list_item(api, seller, f"Mirror {uuid.uuid4().hex[:6]}", 5600)
    customer = await make_person("customer")
    method = await add_card(api, customer, DECLINED)
    placed = await api.post(
        "/api/orders",
        json={"items": [{"item_id": item["id"], "quantity": 1}], "payment_method_id": method},
        headers={**customer.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]

    async def cancelled() -> bool:
        order = await api.get(f"/api/orders/{order_id}", headers=customer.headers)
        return bool(order.json()["status"] == "cancelled")

    await wait_for(cancelled, timeout=30, message="the declined order to be cancelled")
    agent = await make_person("support")
    person = await open_browser()
    page = person.page
    await person.sign_in(agent.email)
    await page.get_by_role("link", name="Support").click()
    await page.get_by_label("Email (or its beginning)").fill(customer.email)
    await page.get_by_role("button", name="Find").click()
    await page.get_by_role("link", name=customer.email).click()
    await page.get_by_role("link", name=f"Order {order_id[:8]}", exact=True).click()
    await expect(page.locator("#correlation-id")).not_to_be_empty(timeout=15_000)
    await expect(page.locator(".event-type").first).to_be_visible()
    await person.screenshot("support-timeline")

    await page.get_by_label("Action", exact=True).select_option("retry_order")
    await page.get_by_label("Reason").fill("Customer says the card works now")
    await page.get_by_role("button", name="Review the action").click()
    await expect(page.get_by_role("heading", name="Confirm: retry the order?")).to_be_visible()
    await person.screenshot("support-confirm")
    await page.get_by_role("button", name="Yes, retry the order").click()
    await expect(page.get_by_role("heading", name=re.compile("^Action "))).to_be_visible()
    await expect(page.locator(".action-status")).to_be_visible()
    started = time.monotonic()
    await expect(page.locator(".action-status")).not_to_have_attribute(
        "data-status",
        re.compile("^(pending|requested|accepted|running|in_progress)$"),
        timeout=30_000,
    )
    assert time.monotonic() - started < 30
    await person.screenshot("support-action")
