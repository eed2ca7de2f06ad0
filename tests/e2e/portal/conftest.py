"""The portal's browser tests: the real platform with the portal, and Chromium driving it.

The stack is the shared one (``tests/e2e/conftest.py``) when ``bazaar up`` already runs
the portal; until then these tests start their own with the portal added.
``BAZAAR_E2E_EXTRA_SERVICES=payments,auctions,support`` also adds services that
``bazaar up`` does not run yet (to try scenarios that wait on them). A scenario whose
services are not in the stack is skipped, saying which it waits for.

The browser is Debian's Chromium (``scripts/ensure-chromium``), headless, one context
(its own cookies) per person in a scenario. Every page's console errors and uncaught
exceptions fail the test. Screenshots of the main pages go to ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from bazaar.stack.console import ConsoleOutput, QuietOutput
from bazaar.stack.services import SERVICES, ServiceSpec
from bazaar.stack.supervisor import Stack
from tests.e2e.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    E2E_REPLICAS,
    USER_PASSWORD,
    E2EUser,
    _AdminSession,
    create_user,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

PORTAL = ServiceSpec(
    "portal",
    8107,
    database=False,
    client=False,
    env=MappingProxyType({"DATA_DIR": "{data_dir}/portal"}),
)
# Services being finished, as bazaar up will run them (added on request only).
UPCOMING = {
    "payments": ServiceSpec("payments", 8104, env=MappingProxyType({"PSP_URL": "{psp_url}"})),
    "auctions": ServiceSpec("auctions", 8105),
    "support": ServiceSpec("support", 8106),
}


def _shared_has_portal() -> bool:
    return any(spec.name == "portal" for spec in SERVICES)


def portal_services() -> tuple[ServiceSpec, ...]:
    services = list(SERVICES)
    names = {spec.name for spec in services}
    for name in os.environ.get("BAZAAR_E2E_EXTRA_SERVICES", "").split(","):
        name = name.strip()
        if name and name not in names and name in UPCOMING:
            services.append(UPCOMING[name])
            names.add(name)
    if "portal" not in names:
        services.append(PORTAL)
    return tuple(services)


@pytest.fixture(scope="session")
async def _own_portal_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    external = os.environ.get("BAZAAR_TEST_DATABASE_URL")
    running = Stack(
        tmp_path_factory.mktemp("portal-stack"),
        port=0,
        psp_port=0,
        replicas={name: count for name, count in E2E_REPLICAS.items()},
        services=portal_services(),
        postgres_url=external,
        database_prefix=f"bzportal_{uuid.uuid4().hex[:6]}" if external else None,
        env={
            "BAZAAR_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
            "BAZAAR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
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
def portal_stack(request: pytest.FixtureRequest) -> Stack:
    """A running platform with the portal in it."""
    extra = os.environ.get("BAZAAR_E2E_EXTRA_SERVICES")
    name = "stack" if _shared_has_portal() and not extra else "_own_portal_stack"
    stack: Stack = request.getfixturevalue(name)
    return stack


def needs(*services: str) -> Callable[[Stack], None]:
    """Skip the scenario (saying why) when the stack lacks one of ``services``."""

    def check(stack: Stack) -> None:
        missing = [name for name in services if name not in {s.name for s in stack.services}]
        if missing:
            pytest.skip(f"waits on {', '.join(missing)} in the stack (bazaar up)")

    return check


@pytest.fixture(scope="session")
async def api(portal_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the public API (through the gateway), to arrange what a scenario needs."""
    async with httpx.AsyncClient(base_url=portal_stack.gateway_url, timeout=15.0) as client:
        yield client


@pytest.fixture(scope="session")
async def portal_url(portal_stack: Stack, api: httpx.AsyncClient) -> str:
    """Where a browser finds the portal: through the gateway once it routes ``/`` there,
    else the portal's own address (it still calls the API through the gateway)."""
    response = await api.get("/")
    if response.status_code == 200 and response.headers.get("content-type", "").startswith(
        "text/html"
    ):
        return portal_stack.gateway_url
    return portal_stack.replica("portal").url


@pytest.fixture(scope="session")
def _portal_admin_session(api: httpx.AsyncClient) -> _AdminSession:
    return _AdminSession(api)


@pytest.fixture
async def portal_admin(_portal_admin_session: _AdminSession) -> E2EUser:
    return await _portal_admin_session.get()


MakeUser = Callable[..., Awaitable[E2EUser]]


@pytest.fixture
def make_person(api: httpx.AsyncClient, portal_admin: E2EUser) -> MakeUser:
    """``await make_person("seller")``: a registered, signed-in (API) user with those roles."""

    async def make(*roles: str, prefix: str = "portal") -> E2EUser:
        email = f"{prefix}-{uuid.uuid4().hex[:10]}@bazaar.example.com"
        return await create_user(api, portal_admin, roles or ("customer",), email=email)

    return make


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - once per session
        pytest.skip("Chromium is missing: run scripts/ensure-chromium (make test does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


# Landmarks, one h1, a title and a language, a label for every control, a name for every
# link and button, unique ids, descriptions that exist, no horizontal scrolling.
ACCESSIBILITY_AUDIT = """() => {
  const problems = [];
  const one = (selector) => document.querySelectorAll(selector).length === 1;
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  if (!document.title.trim()) problems.push("no <title>");
  for (const landmark of ["header", "main", "footer"]) {
    if (!one(landmark)) problems.push(`not exactly one <${landmark}>`);
  }
  if (!document.querySelector("nav[aria-label]")) problems.push("no labelled <nav>");
  if (!one("h1")) problems.push(`${document.querySelectorAll("h1").length} <h1>`);
  for (const control of document.querySelectorAll("input, select, textarea")) {
    if (control.type === "hidden") continue;
    const named = (control.labels && control.labels.length) ||
      control.getAttribute("aria-label") || control.getAttribute("aria-labelledby");
    if (!named) problems.push(`no label: ${control.outerHTML.slice(0, 80)}`);
  }
  for (const element of document.querySelectorAll("a, button")) {
    if (!element.textContent.trim() && !element.getAttribute("aria-label")) {
      problems.push(`no accessible name: ${element.outerHTML.slice(0, 80)}`);
    }
  }
  const seen = new Set();
  for (const element of document.querySelectorAll("[id]")) {
    if (seen.has(element.id)) problems.push(`duplicate id ${element.id}`);
    seen.add(element.id);
  }
  for (const element of document.querySelectorAll("[aria-describedby]")) {
    for (const id of element.getAttribute("aria-describedby").split(/\\s+/)) {
      if (!document.getElementById(id)) problems.push(`aria-describedby names no ${id}`);
    }
  }
  for (const image of document.querySelectorAll("img:not([alt])")) {
    problems.push(`image without alt: ${image.src}`);
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) {
    problems.push(`scrolls sideways: ${document.documentElement.scrollWidth}px wide`);
  }
  return problems;
}"""


@dataclass
class Person:
    """One browser (its own cookies) used by one person in a scenario."""

    context: BrowserContext
    page: Page
    base_url: str
    problems: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    async def goto(self, path: str) -> Any:
        return await self.page.goto(self.base_url + path)

    async def sign_in(self, email: str, password: str = USER_PASSWORD) -> None:
        await self.goto("/sign-in")
        await self.page.get_by_label("Email").fill(email)
        await self.page.get_by_label("Password").fill(password)
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.get_by_role("button", name="Sign out").wait_for()

    async def screenshot(self, name: str, *, full_page: bool = True) -> None:
        """Save the page into docs/screenshots/ (after checking its accessibility basics)."""
        await self.audit(name)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)

    async def audit(self, name: str) -> None:
        """The accessibility basics a page must have; what is missing fails the test."""
        found: list[str] = await self.page.evaluate(ACCESSIBILITY_AUDIT)
        self.problems += [f"{name}: {problem}" for problem in found]


def _console_listener(person: Person) -> Callable[[ConsoleMessage], None]:
    def on_console(message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = message.text
        # A page the scenario expects to fail (the 403 page) is logged by Chromium.
        if "Failed to load resource" in text and any(
            f"status of {status}" in text for status in person.expected_statuses
        ):
            return
        person.problems.append(f"console error: {text}")

    return on_console


@pytest.fixture
async def open_browser(
    browser: Browser, portal_url: str
) -> AsyncIterator[Callable[..., Awaitable[Person]]]:
    """``await open_browser()`` → a new :class:`Person`; console errors fail the test."""
    people: list[Person] = []

    async def open_one(viewport: dict[str, int] | None = None) -> Person:
        context = await browser.new_context(viewport=viewport or DESKTOP)  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        page = await context.new_page()
        person = Person(context, page, portal_url)
        page.on("console", _console_listener(person))
        page.on("pageerror", lambda error: person.problems.append(f"page error: {error}"))
        people.append(person)
        return person

    yield open_one
    problems = [problem for person in people for problem in person.problems]
    for person in people:
        await person.context.close()
    assert not problems, "\n".join(problems)


def portal_log_lines(stack: Stack) -> Iterator[str]:
    for process in stack.replicas("portal"):
        yield from process.recent
