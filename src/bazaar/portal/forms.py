"""Reading what a form posted, and the idempotency key each form carries.

A form that creates something (an order, a card, a bid) is rendered with a fresh
``Idempotency-Key`` in a hidden field: pressing the button twice, or the browser
resending the post, repeats the same key, so the platform does it once.
"""

from __future__ import annotations

import uuid

from fastapi import Request

IDEMPOTENCY_FIELD = "idempotency_key"


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


async def form_values(request: Request) -> dict[str, str]:
    """The posted text fields (the last value of each), stripped; files are ignored."""
    form = await request.form()
    values: dict[str, str] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            values[name] = value.strip()
    return values


async def form_list(request: Request, name: str) -> list[str]:
    form = await request.form()
    return [value for value in form.getlist(name) if isinstance(value, str)]


def idempotency_key_of(values: dict[str, str]) -> str:
    """The form's key, if it is a sane one; else a new one (no protection, but no failure)."""
    key = values.get(IDEMPOTENCY_FIELD, "")
    if 1 <= len(key) <= 255 and key.isascii() and key.isprintable():
        return key
    return new_idempotency_key()


def parse_uuid(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value or ""))
    except ValueError:
        return None
