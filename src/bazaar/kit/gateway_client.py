"""Service-to-service calls through the gateway, with the service's client-credentials token.

ARCHITECTURE.md: services call each other only through the gateway, which checks the
token and balances across replicas like for any other caller. The client fetches a
token with ``grant_type=client_credentials`` and reuses it until shortly before it
expires (:class:`ClientCredentials`); a 401 (a rotated key, a revoked token) makes it
fetch a new one once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bazaar.kit.errors import ServiceUnavailable
from bazaar.kit.requestcontext import current_request_id
from bazaar.kit.telemetry import current_traceparent


class ClientCredentials:
    """A service's token from auth's token endpoint (``grant_type=client_credentials``),
    reused until 30 s before it expires; ``renew`` fetches a new one (after a 401).

    Services ask through the gateway (:class:`GatewayClient`); the gateway asks an auth
    replica directly for the token it reads auth's internal revocation feed with.
    """

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = asyncio.Lock()

    async def token(
        self, http: aiohttp.ClientSession, base_url: str, *, renew: bool = False
    ) -> str:
        """The token, fetched from ``base_url``'s ``/api/auth/token`` when there is none
        still good; ServiceUnavailable when auth cannot be reached or refuses."""
        async with self._lock:
            if not renew and self._token and time.monotonic() < self._token_expires:
                return self._token
            try:
                async with http.post(
                    f"{base_url.rstrip('/')}/api/auth/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": self.client_id,
                        "client_secret": self._client_secret,
                    },
                ) as response:
                    if response.status != 200:
                        raise ServiceUnavailable(
                            f"Auth refused this service's credentials ({response.status})"
                        )
                    body = await response.json()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ServiceUnavailable("Auth could not be reached for a token") from exc
            self._token = str(body["access_token"])
            self._token_expires = time.monotonic() + max(5, int(body.get("expires_in", 60)) - 30)
            return self._token


class GatewayClient:
    def __init__(
        self,
        gateway_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._base = gateway_url.rstrip("/")
        self._credentials = ClientCredentials(client_id, client_secret)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=100)
            )
        return self._http

    async def token(self, *, renew: bool = False) -> str:
        return await self._credentials.token(self._session(), self._base, renew=renew)

    async def request_json(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """Call ``path`` (``/api/...``) through the gateway; returns (status, parsed body)."""
        renewed = False
        while True:
            headers = {"Authorization": f"Bearer {await self.token(renew=renewed)}"}
            request_id = current_request_id.get()
            if request_id:
                headers["X-Request-ID"] = request_id
            traceparent = current_traceparent.get()
            if traceparent:
                headers["traceparent"] = traceparent
            try:
                async with self._session().request(
                    method, f"{self._base}{path}", json=json, params=params, headers=headers
                ) as response:
                    if response.status == 401 and not renewed:
                        renewed = True
                        continue
                    body = await response.json(content_type=None)
                    return response.status, body
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise ServiceUnavailable(f"The gateway did not answer {method} {path}") from exc

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
