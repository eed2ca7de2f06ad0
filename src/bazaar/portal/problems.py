"""What went wrong, as the user reads it: problem+json (and OAuth errors) made presentable.

Every refusal the API answers becomes a :class:`Problem` with the API's own
``detail`` and its per-field ``errors``. Forms show the field errors beside their
fields and the rest in a summary at the top; pages without a form show the
problem on an error page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

# RFC 6749 §5.2 errors, said for people.
_OAUTH_DETAILS = {
    "invalid_grant": "The email or password is not right.",
    "invalid_request": "The request was incomplete.",
    "invalid_client": "This client is not known.",
    "unsupported_grant_type": "This way of signing in is not supported.",
}
_STATUS_TITLES = {
    400: "The request was not accepted",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "That cannot be done now",
    413: "That is too large",
    422: "Some fields need attention",
    429: "Too many attempts",
    500: "Something went wrong on our side",
    502: "The platform is not answering",
    503: "The platform is not available right now",
    504: "The platform took too long to answer",
}


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Problem:
    """A refusal: ``detail`` and ``errors`` are what the API said."""

    status: int
    title: str
    detail: str
    code: str
    errors: tuple[FieldError, ...] = ()
    retry_after: int | None = None

    @classmethod
    def of(cls, status: int, code: str, detail: str, title: str | None = None) -> Problem:
        return cls(status, title or _STATUS_TITLES.get(status, "Error"), detail, code)

    @classmethod
    def from_response(
        cls, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Problem:
        """The problem an API response describes, whatever its shape."""
        retry_after = _retry_after((headers or {}).get("Retry-After"))
        try:
            data: Any = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if "error" in data and "title" not in data:  # RFC 6749 §5.2
            code = str(data["error"])
            detail = str(
                data.get("error_description") or _OAUTH_DETAILS.get(code, "The request failed.")
            )
            return cls(status, _STATUS_TITLES.get(status, "Error"), detail, code, (), retry_after)
        title = str(data.get("title") or _STATUS_TITLES.get(status, f"Error {status}"))
        detail = str(data.get("detail") or title)
        code = str(data.get("code") or f"http_{status}")
        return cls(status, title, detail, code, _field_errors(data.get("errors")), retry_after)

    def field_messages(self, fields: Iterable[str]) -> dict[str, str]:
        """Field name -> message, for the errors that name one of ``fields``.

        An API field ``items.0.quantity`` matches the form field ``quantity``; a
        nested pydantic location matches on its first or last part.
        """
        wanted = set(fields)
        found: dict[str, str] = {}
        for error in self.errors:
            name = _form_field(error.field, wanted)
            if name is not None and name not in found:
                found[name] = error.message
        return found

    def other_errors(self, fields: Iterable[str]) -> list[FieldError]:
        """The field errors that no form field shows (listed in the summary)."""
        wanted = set(fields)
        return [error for error in self.errors if _form_field(error.field, wanted) is None]


def _form_field(api_field: str, wanted: set[str]) -> str | None:
    if api_field in wanted:
        return api_field
    parts = [part for part in api_field.split(".") if part and not part.isdigit()]
    for candidate in (parts[-1:], parts[:1]):
        if candidate and candidate[0] in wanted:
            return candidate[0]
    return None


def _field_errors(raw: Any) -> tuple[FieldError, ...]:
    if not isinstance(raw, list):
        return ()
    errors = []
    for entry in raw:
        if isinstance(entry, dict):
            name = entry.get("field") or ".".join(str(part) for part in entry.get("loc", ()))
            message = entry.get("message") or entry.get("msg") or "is not valid"
            errors.append(FieldError(str(name or "body"), str(message)))
    return tuple(errors)


def _retry_after(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


@dataclass
class FormState:
    """A form being shown again: the values to refill and what to say about them."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    problem: Problem | None = None
    other_errors: list[FieldError] = field(default_factory=list)

    @classmethod
    def failed(
        cls, problem: Problem, values: Mapping[str, str], fields: Iterable[str]
    ) -> FormState:
        names = list(fields)
        return cls(
            values=dict(values),
            errors=problem.field_messages(names),
            problem=problem,
            other_errors=problem.other_errors(names),
        )

    @classmethod
    def invalid(cls, values: Mapping[str, str], errors: Mapping[str, str]) -> FormState:
        """Checked here before asking the API (a required field left empty, a bad amount)."""
        return cls(
            values=dict(values),
            errors=dict(errors),
            problem=Problem.of(422, "validation_failed", "One or more fields need attention."),
        )
