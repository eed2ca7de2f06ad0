"""The browser's session: one encrypted cookie holding the user's tokens, CSRF token and basket.

The portal keeps no server-side state, so any replica serves any request. The
cookie is ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` when the browser came over
HTTPS; its value is the session as compact JSON, compressed, then encrypted and
authenticated with Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp that makes
an idle session expire). Nobody can read the tokens out of it or forge one.

:class:`SessionMiddleware` decodes the cookie before the route runs (a missing,
tampered or expired one gives a fresh anonymous session with a new CSRF token) and
writes it back with the response only when the route changed it.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bazaar.kit.logging import get_logger
from bazaar.portal.settings import PortalSettings

log = get_logger(__name__)

SESSION_STATE_KEY = "portal_session"
# Browsers keep cookies up to 4096 bytes, name and attributes included.
MAX_COOKIE_VALUE = 3900
SECRET_FILE = "session-secret"
# Paths that never need a session (no cookie read, none written).
SESSIONLESS_PREFIXES = ("/static/", "/healthz", "/readyz", "/metrics", "/favicon")


@dataclass
class Session:
    """What the portal remembers about one browser between requests."""

    csrf_token: str
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float = 0.0
    user_id: str | None = None
    email: str | None = None
    display_name: str | None = None
    roles: list[str] = field(default_factory=list)
    # item id -> quantity, in the order added
    basket: dict[str, int] = field(default_factory=dict)
    flashes: list[tuple[str, str]] = field(default_factory=list)
    # Not stored: whether the cookie must be written with this response.
    dirty: bool = False

    @classmethod
    def new(cls) -> Session:
        return cls(csrf_token=secrets.token_urlsafe(24), dirty=True)

    @property
    def signed_in(self) -> bool:
        return self.access_token is not None and self.refresh_token is not None

    def has_any_role(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)

    def sign_in(
        self,
        *,
        access_token: str,
        refresh_token: str,
        expires_at: float,
        user_id: str,
        email: str,
        display_name: str,
        roles: list[str],
    ) -> None:
        # A new CSRF token at sign-in: one seen before it (login CSRF) is worth nothing now.
        self.csrf_token = secrets.token_urlsafe(24)
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.expires_at = expires_at
        self.user_id = user_id
        self.email = email
        self.display_name = display_name
        self.roles = sorted(roles)
        self.dirty = True

    def update_tokens(
        self, access_token: str, refresh_token: str, expires_at: float, roles: list[str]
    ) -> None:
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.expires_at = expires_at
        self.roles = sorted(roles)
        self.dirty = True

    def sign_out(self) -> None:
        """Forget the user and the basket; a new CSRF token for the anonymous session."""
        self.csrf_token = secrets.token_urlsafe(24)
        self.access_token = self.refresh_token = None
        self.expires_at = 0.0
        self.user_id = self.email = self.display_name = None
        self.roles = []
        self.basket = {}
        self.dirty = True

    def flash(self, message: str, level: str = "info") -> None:
        """A message for the next page shown (after a redirect)."""
        self.flashes.append((level, message))
        self.dirty = True

    def pop_flashes(self) -> list[tuple[str, str]]:
        flashes, self.flashes = self.flashes, []
        if flashes:
            self.dirty = True
        return flashes

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"c": self.csrf_token}
        if self.signed_in:
            data.update(
                a=self.access_token,
                r=self.refresh_token,
                x=int(self.expires_at),
                u=self.user_id,
                e=self.email,
                n=self.display_name,
                o=self.roles,
            )
        if self.basket:
            data["b"] = [[_compact_id(item), quantity] for item, quantity in self.basket.items()]
        if self.flashes:
            data["f"] = [list(flash) for flash in self.flashes]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        session = cls(csrf_token=str(data["c"]))
        if "a" in data:
            session.access_token = str(data["a"])
            session.refresh_token = str(data["r"])
            session.expires_at = float(data["x"])
            session.user_id = str(data["u"])
            session.email = str(data["e"])
            session.display_name = str(data["n"])
            session.roles = [str(role) for role in data["o"]]
        for item, quantity in data.get("b", []):
            session.basket[_expand_id(str(item))] = int(quantity)
        session.flashes = [(str(level), str(text)) for level, text in data.get("f", [])]
        return session


def _compact_id(item_id: str) -> str:
    """A UUID in 22 characters instead of 36 (baskets must fit in the cookie)."""
    try:
        raw = bytes.fromhex(item_id.replace("-", ""))
    except ValueError:
        return item_id
    if len(raw) != 16:
        return item_id
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _expand_id(compact: str) -> str:
    if len(compact) != 22:
        return compact
    try:
        raw = base64.urlsafe_b64decode(compact + "==")
    except (binascii.Error, ValueError):
        return compact
    hexed = raw.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


class SessionCodec:
    """Session <-> cookie value: JSON, zlib, Fernet."""

    def __init__(self, key: bytes, max_age_seconds: int) -> None:
        self._fernet = Fernet(key)
        self.max_age_seconds = max_age_seconds

    def encode(self, session: Session) -> str:
        packed = zlib.compress(orjson.dumps(session.to_json()), 9)
        return self._fernet.encrypt(packed).decode()

    def decode(self, value: str, *, now: float | None = None) -> Session | None:
        """The session in ``value``; None when it is forged, damaged or idle too long."""
        try:
            packed = self._fernet.decrypt_at_time(
                value.encode(),
                ttl=self.max_age_seconds,
                current_time=int(now if now is not None else time.time()),
            )
            return Session.from_json(orjson.loads(zlib.decompress(packed)))
        except (InvalidToken, zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def fits(self, session: Session) -> bool:
        """Whether the session still fits in one cookie."""
        return len(self.encode(session)) <= MAX_COOKIE_VALUE


def fernet_key(secret: str) -> bytes:
    """A Fernet key from ``secret``: used as is when it is one, else derived with HKDF."""
    try:
        Fernet(secret.encode())
    except (ValueError, binascii.Error):
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"bazaar-portal-session"
        ).derive(secret.encode())
        return base64.urlsafe_b64encode(derived)
    return secret.encode()


def load_session_key(settings: PortalSettings) -> bytes:
    """The key that encrypts session cookies: from the settings, else from (or first into)
    ``data_dir``. Creating the file is atomic, so replicas starting together agree."""
    if settings.session_secret is not None and settings.session_secret.get_secret_value():
        return fernet_key(settings.session_secret.get_secret_value())
    path: Path = settings.data_dir / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = ""
        for _ in range(50):  # another replica may be writing it right now
            secret = path.read_text().strip()
            if secret:
                break
            time.sleep(0.05)
        if not secret:
            raise RuntimeError(
                f"{path} is empty: delete it or set BAZAAR_PORTAL_SESSION_SECRET"
            ) from None
        return fernet_key(secret)
    generated = Fernet.generate_key()
    with os.fdopen(descriptor, "wb") as file:
        file.write(generated + b"\n")
    log.info("portal_session_secret_generated", path=str(path))
    return generated


def request_is_https(scope: Scope, trust_forwarded: bool) -> bool:
    if scope.get("scheme") == "https":
        return True
    if trust_forwarded:
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-proto":
                first: bytes = value.split(b",")[0]
                return first.strip().lower() == b"https"
    return False


def cookie_header(name: str, value: str, *, max_age: int, secure: bool) -> str:
    attributes = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)


def _cookie_value(scope: Scope, name: str) -> str | None:
    wanted = name.encode() + b"="
    for header, value in scope.get("headers", []):
        if header != b"cookie":
            continue
        for part in value.split(b";"):
            part = part.strip()
            if part.startswith(wanted):
                found: str = part[len(wanted) :].decode("latin-1")
                return found
    return None


class SessionMiddleware:
    """Reads the session cookie into the request and writes it back when it changed (pure ASGI)."""

    def __init__(
        self, app: ASGIApp, codec: SessionCodec, cookie_name: str, trust_forwarded: bool
    ) -> None:
        self.app = app
        self.codec = codec
        self.cookie_name = cookie_name
        self.trust_forwarded = trust_forwarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(SESSIONLESS_PREFIXES):
            await self.app(scope, receive, send)
            return
        value = _cookie_value(scope, self.cookie_name)
        session = self.codec.decode(value) if value else None
        if session is None:
            session = Session.new()
        scope.setdefault("state", {})[SESSION_STATE_KEY] = session
        secure = request_is_https(scope, self.trust_forwarded)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.dirty:
                encoded = self.codec.encode(session)
                if len(encoded) > MAX_COOKIE_VALUE:
                    # Never hand out a cookie the browser would drop (it would sign the
                    # user out): lose the basket rather than the session.
                    log.warning("portal_session_too_large", size=len(encoded))
                    session.basket.clear()
                    session.flashes.clear()
                    encoded = self.codec.encode(session)
                headers = MutableHeaders(scope=message)
                headers.append(
                    "set-cookie",
                    cookie_header(
                        self.cookie_name,
                        encoded,
                        max_age=self.codec.max_age_seconds,
                        secure=secure,
                    ),
                )
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def session_of(request: Request) -> Session:
    """The request's session (set by :class:`SessionMiddleware`; a throwaway one on the
    paths that have none, such as a missing static file's error page)."""
    state = request.scope.setdefault("state", {})
    session = state.get(SESSION_STATE_KEY)
    if session is None:
        session = state[SESSION_STATE_KEY] = Session.new()
    assert isinstance(session, Session)
    return session
