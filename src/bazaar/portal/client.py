"""The portal's one way to the platform: the public API through the gateway, as any client.

One pooled aiohttp session serves every page (aiohttp answered a small JSON page in
about 1.5 ms p50 on this machine where httpx took about 10 ms at a concurrency of 10;
see docs/portal.md). Calls carry the signed-in user's access token, renewed without
the user noticing: shortly before it expires, or once when a call answers 401 (a
revoked token, new roles). Refresh tokens rotate and a second use of one ends the
whole session, so concurrent requests of one browser share a single renewal
(:class:`TokenRefresher`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from bazaar.kit.logging import get_logger
from bazaar.kit.requestcontext import current_request_id
from bazaar.kit.telemetry import current_traceparent
from bazaar.portal.problems import Problem
from bazaar.portal.session import Session

log = get_logger(__name__)


class ApiError(Exception):
    """The API refused: its problem, ready to show."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.status} {problem.code}: {problem.detail}")
        self.problem = problem

    @property
    def status(self) -> int:
        return self.problem.status


class PlatformUnavailable(ApiError):
    """The gateway could not be reached, or did not answer in time."""

    def __init__(self, detail: str = "The platform cannot be reached right now.") -> None:
        super().__init__(Problem.of(503, "platform_unavailable", detail))


class SignInRequired(Exception):
    """The page needs a signed-in user (none, or the session has ended)."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "Please sign in.")
        self.message = message


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: float
    subject: str
    roles: list[str]


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified: the portal got it from auth itself and only reads
    when it expires and whose it is; the gateway verifies it on every call."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_pair(body: Mapping[str, Any], *, now: float | None = None) -> TokenPair:
    """A token response (RFC 6749 §5.1) as the session keeps it."""
    access = str(body["access_token"])
    claims = token_claims(access)
    now = time.time() if now is None else now
    expires_at = float(claims.get("exp") or now + int(body.get("expires_in", 900)))
    roles = claims.get("roles")
    return TokenPair(
        access_token=access,
        refresh_token=str(body.get("refresh_token") or ""),
        expires_at=expires_at,
        subject=str(claims.get("sub", "")),
        roles=[str(role) for role in roles] if isinstance(roles, list) else [],
    )


class TokenRefresher:
    """One renewal per refresh token, shared by every request that presents it.

    The new pair is kept for ``grace_seconds``: a request of the same browser that
    started before the new cookie arrived gets the same pair instead of spending the
    old refresh token a second time (which auth treats as theft).
    """

    def __init__(
        self,
        grace_seconds: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._grace = grace_seconds
        self._clock = clock
        self._max_entries = max_entries
        self._in_flight: dict[str, asyncio.Future[TokenPair]] = {}
        self._recent: OrderedDict[str, tuple[float, TokenPair]] = OrderedDict()

    async def refresh(
        self, refresh_token: str, exchange: Callable[[str], Awaitable[TokenPair]]
    ) -> TokenPair:
        key = hashlib.sha256(refresh_token.encode()).hexdigest()
        now = self._clock()
        self._prune(now)
        recent = self._recent.get(key)
        if recent is not None:
            return recent[1]
        pending = self._in_flight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[TokenPair] = asyncio.get_running_loop().create_future()
        # Nobody else may be waiting: an exception nobody retrieves must not be reported.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._in_flight[key] = future
        try:
            pair = await exchange(refresh_token)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(pair)
            self._recent[key] = (self._clock(), pair)
            return pair
        finally:
            del self._in_flight[key]

    def _prune(self, now: float) -> None:
        while self._recent:
            key, (stored, _) = next(iter(self._recent.items()))
            if now - stored <= self._grace and len(self._recent) <= self._max_entries:
                break
            del self._recent[key]


JsonBody = dict[str, Any] | list[Any] | None


class PlatformClient:
    """Calls of the public API through the gateway, on behalf of a session's user."""

    def __init__(
        self,
        gateway_url: str,
        *,
        timeout_seconds: float = 10.0,
        connection_limit: int = 200,
        refresh_margin_seconds: float = 60.0,
        refresh_grace_seconds: float = 30.0,
    ) -> None:
        self.base_url = gateway_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, connect=3.0)
        self._connection_limit = connection_limit
        self._refresh_margin = refresh_margin_seconds
        self.refresher = TokenRefresher(refresh_grace_seconds)
        self._http: aiohttp.ClientSession | None = None
        self._streams: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(limit=self._connection_limit, keepalive_timeout=30),
            # The portal keeps its own cookie; the platform's are none of its business.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # Event streams stay open for as long as someone watches: their own pool, no timeout.
        self._streams = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=3.0, sock_read=None),
            connector=aiohttp.TCPConnector(limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        for http in (self._http, self._streams):
            if http is not None:
                await http.close()
        self._http = self._streams = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("the platform client is not started")
        return self._http

    @staticmethod
    def _context_headers() -> dict[str, str]:
        headers = {"Accept": "application/json"}
        request_id = current_request_id.get()
        if request_id:
            headers["X-Request-ID"] = request_id
        traceparent = current_traceparent.get()
        if traceparent:
            headers["traceparent"] = traceparent
        return headers

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        json: JsonBody = None,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        forwarded_for: str | None = None,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        headers = self._context_headers()
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        data: bytes | None = None
        if json is not None:
            data = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        try:
            async with self._session().request(
                method,
                self.base_url + path,
                data=data if form is None else dict(form),
                params={key: value for key, value in (params or {}).items() if value != ""},
                headers=headers,
                allow_redirects=False,
            ) as response:
                return response.status, await response.read(), response.headers
        except TimeoutError as exc:
            raise PlatformUnavailable("The platform took too long to answer.") from exc
        except aiohttp.ClientError as exc:
            log.warning("platform_unreachable", path=path, error=type(exc).__name__)
            raise PlatformUnavailable() from exc

    @staticmethod
    def _parsed(status: int, body: bytes, headers: Mapping[str, str]) -> Any:
        if status >= 400:
            raise ApiError(Problem.from_response(status, body, headers))
        if not body:
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(
                Problem.of(502, "bad_answer", "The platform gave an answer the portal cannot read.")
            ) from exc

    async def call(
        self,
        method: str,
        path: str,
        session: Session | None = None,
        *,
        json: JsonBody = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Call the API as the session's user (anonymously without one); the parsed answer.

        Raises :class:`ApiError` for a refusal, :class:`PlatformUnavailable` when the
        gateway cannot be reached and :class:`SignInRequired` when the session's
        tokens can no longer be renewed.
        """
        token: str | None = None
        if session is not None and session.signed_in:
            if session.expires_at - time.time() < self._refresh_margin:
                await self.refresh(session)
            token = session.access_token
        status, body, headers = await self._send(
            method, path, token=token, json=json, params=params, idempotency_key=idempotency_key
        )
        if status == 401 and token is not None and session is not None:
            # Revoked (roles changed, signed out elsewhere) or expired early: renew once.
            # The gateway refused before any service saw the call, so sending it again is safe.
            await self.refresh(session, failed_token=token)
            status, body, headers = await self._send(
                method,
                path,
                token=session.access_token,
                json=json,
                params=params,
                idempotency_key=idempotency_key,
            )
            if status == 401:
                session.sign_out()
                raise SignInRequired("Your session has ended. Please sign in again.")
        return self._parsed(status, body, headers)

    async def get(
        self, path: str, session: Session | None = None, **params: str | int | None
    ) -> Any:
        query = {key: str(value) for key, value in params.items() if value not in (None, "")}
        return await self.call("GET", path, session, params=query)

    # --- tokens ------------------------------------------------------------------------

    async def _token_grant(
        self, form: Mapping[str, str], forwarded_for: str | None = None
    ) -> TokenPair:
        status, body, headers = await self._send(
            "POST", "/api/auth/token", token=None, form=form, forwarded_for=forwarded_for
        )
        return token_pair(self._parsed(status, body, headers))

    async def password_grant(
        self, email: str, password: str, *, client_address: str | None = None
    ) -> TokenPair:
        """Sign in. ``client_address`` is the browser's: auth throttles failed sign-ins per
        address, which must not be the portal's own (a gateway that trusts the portal as a
        proxy passes it on)."""
        return await self._token_grant(
            {"grant_type": "password", "username": email, "password": password},
            forwarded_for=client_address,
        )

    async def refresh(self, session: Session, failed_token: str | None = None) -> None:
        """Renew the session's tokens (shared with concurrent requests of the same session)."""
        refresh_token = session.refresh_token
        if refresh_token is None:
            raise SignInRequired()

        async def exchange(token: str) -> TokenPair:
            return await self._token_grant({"grant_type": "refresh_token", "refresh_token": token})

        try:
            pair = await self.refresher.refresh(refresh_token, exchange)
            if failed_token is not None and pair.access_token == failed_token:
                # A renewal shared from before the refusal: renew once more from its result.
                pair = await self.refresher.refresh(pair.refresh_token, exchange)
        except PlatformUnavailable:
            raise
        except ApiError as exc:
            log.info("portal_refresh_refused", code=exc.problem.code, status=exc.status)
            session.sign_out()
            raise SignInRequired("Your session has ended. Please sign in again.") from exc
        session.update_tokens(pair.access_token, pair.refresh_token, pair.expires_at, pair.roles)

    async def revoke(self, token: str) -> None:
        """Revoke a token (RFC 7009); failures are not the user's problem at sign-out."""
        with contextlib.suppress(ApiError):
            await self._send("POST", "/api/auth/revoke", token=None, form={"token": token})

    # --- event streams -----------------------------------------------------------------

    async def open_stream(
        self, path: str, last_event_id: str | None = None
    ) -> aiohttp.ClientResponse:
        """An open event stream (the caller releases it); ApiError when it is refused."""
        if self._streams is None:
            raise RuntimeError("the platform client is not started")
        headers = {**self._context_headers(), "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            response = await self._streams.get(self.base_url + path, headers=headers)
        except aiohttp.ClientError as exc:
            raise PlatformUnavailable() from exc
        if response.status != 200:
            body = await response.read()
            response.release()
            raise ApiError(Problem.from_response(response.status, body, response.headers))
        return response
