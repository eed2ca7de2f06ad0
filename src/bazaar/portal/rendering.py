"""Pages and fragments: the Jinja2 environment, its filters and the response helpers.

A full page gets the layout (navigation, flashes, the CSRF token for htmx); a
fragment (a template whose name starts with ``_``) is what an htmx request swaps in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bazaar.portal.money import exponent, format_money, format_plain
from bazaar.portal.session import session_of

STATIC_DIR = Path(str(files("bazaar.portal") / "static"))
TEMPLATES_DIR = Path(str(files("bazaar.portal") / "templates"))

ORDER_STATUS_LABELS = {
    "pending": "Pending",
    "confirmed": "Confirmed",
    "cancelling": "Cancelling",
    "cancelled": "Cancelled",
}
REASON_LABELS = {
    "out_of_stock": "an item is out of stock",
    "payment_declined": "the payment was declined",
    "payment_failed": "the payment failed",
    "user_request": "you cancelled it",
    "support_action": "our support team cancelled it",
    "timeout": "it took too long to complete",
}
FAILURE_LABELS = {
    "card_declined": "the card was declined",
    "insufficient_funds": "insufficient funds",
    "processing_error": "a processing error",
}


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_time(value: Any) -> str:
    moment = parse_time(value)
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")


def iso_time(value: Any) -> str:
    moment = parse_time(value)
    return "" if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def short_id(value: Any) -> str:
    return str(value or "")[:8]


def _static_versions() -> dict[str, str]:
    """A content hash per static file, for cache-busting URLs."""
    versions = {}
    for path in STATIC_DIR.iterdir():
        if path.is_file():
            versions[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return versions


class Pages:
    """Renders templates into responses."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        versions = _static_versions()
        self.env.globals["static"] = lambda name: f"/static/{name}?v={versions.get(name, '0')}"
        self.env.globals["order_status_labels"] = ORDER_STATUS_LABELS
        self.env.globals["reason_labels"] = REASON_LABELS
        self.env.globals["failure_labels"] = FAILURE_LABELS
        self.env.filters["money"] = format_money
        self.env.filters["plain_money"] = format_plain
        self.env.filters["exponent"] = exponent
        self.env.filters["time"] = format_time
        self.env.filters["iso"] = iso_time
        self.env.filters["short_id"] = short_id
        self.env.globals["query"] = _query

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        session = session_of(request)
        fragment = template.rsplit("/", 1)[-1].startswith("_")
        values: dict[str, Any] = {
            "request": request,
            "session": session,
            "csrf_token": session.csrf_token,
            "basket_count": sum(session.basket.values()),
            "path": request.url.path,
            **(context or {}),
        }
        if not fragment:
            values["flashes"] = session.pop_flashes()
        body = self.env.get_template(template).render(values)
        return HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))


def _query(base: str, **params: Any) -> str:
    """``base`` with the non-empty ``params`` as its query string."""
    kept = {key: value for key, value in params.items() if value not in (None, "")}
    return f"{base}?{urlencode(kept)}" if kept else base


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def see_other(request: Request, url: str) -> Response:
    """After a form: go to ``url`` (a full navigation for htmx requests too)."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def safe_next(url: str | None, default: str = "/") -> str:
    """Only our own paths as a place to go back to (no open redirect)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return default
    return url
