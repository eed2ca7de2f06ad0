"""The portal's browser tests: the real platform with the portal, and Chromium driving it.

The stack is the shared one (``tests/e2e/conftest.py``), which runs the portal behind
the gateway as ``bazaar up`` does.

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
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from bazaar.stack.supervisor import Stack
from tests.e2e.conftest import (
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


@pytest.fixture(scope="session")
def portal_stack(stack: Stack) -> Stack:
    """The session's platform; ``bazaar up`` runs the portal behind the gateway."""
    assert any(spec.name == "portal" for spec in stack.services), "the stack runs no portal"
    return stack


@pytest.fixture(scope="session")
async def api(portal_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the public API (through the gateway), to arrange what a scenario needs."""
    async with httpx.AsyncClient(base_url=portal_stack.gateway_url, timeout=15.0) as client:
        yield client


@pytest.fixture(scope="session")
async def portal_url(portal_stack: Stack, api: httpx.AsyncClient) -> str:
    """Where a browser finds the portal: the gateway, which routes every page to it."""
    response = await api.get("/")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return portal_stack.gateway_url


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
        pytest.fail("Chromium is missing: run scripts/ensure-chromium (make test does)")
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
