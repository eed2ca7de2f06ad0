"""Access-token verification from a cached JWKS, shared by the gateway and every service.

Tokens are RS256 JWTs signed by the auth service, each naming its key by ``kid``.
The verifier keeps the public keys in memory and refetches the JWKS only when a
token names a ``kid`` it does not know (a rotation), at most once a second, so a
flood of forged ``kid``s cannot turn into a flood of fetches.

Signature checks are the expensive part of a request at the gateway, so a token
that verified once is remembered until its ``exp``: the next request with the same
token costs a dictionary lookup. Revocation is a separate, cheap set lookup
(:class:`RevocationList`), checked on every request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
from jwt.algorithms import RSAAlgorithm

from bazaar.kit.errors import InvalidToken

ALGORITHM = "RS256"
ROLE_SERVICE = "service"
ALL_ROLES = frozenset({"customer", "seller", "support", "admin"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (``roles`` from the token) or a service client."""

    subject: str
    roles: frozenset[str]
    token_id: str
    expires_at: int
    email: str | None = None

    @property
    def is_service(self) -> bool:
        return ROLE_SERVICE in self.roles

    def has_any(self, roles: Iterable[str]) -> bool:
        return not self.roles.isdisjoint(roles)


class JwksCache:
    """The auth service's public keys by ``kid``, fetched on demand."""

    def __init__(self, url: str, *, min_refresh_interval: float = 1.0) -> None:
        self.url = url
        self._keys: dict[str, Any] = {}
        self._min_interval = min_refresh_interval
        self._last_fetch = 0.0
        self._lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None

    def set_keys(self, jwks: dict[str, Any]) -> None:
        """Replace the keys from a JWKS document (also used by auth, which has them locally)."""
        keys: dict[str, Any] = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") == "RSA" and jwk.get("kid"):
                keys[jwk["kid"]] = RSAAlgorithm.from_jwk(jwk)
        self._keys = keys

    def get(self, kid: str) -> Any | None:
        return self._keys.get(kid)

    async def refresh(self) -> None:
        """Get the keys again, unless that was done less than ``min_refresh_interval`` ago:
        a flood of unknown ``kid``s must not become a flood of fetches. Subclasses change
        where the keys come from (:meth:`_fetch`), never this throttle."""
        async with self._lock:
            now = time.monotonic()
            if now - self._last_fetch < self._min_interval:
                return
            self._last_fetch = now
            await self._fetch()

    async def _fetch(self) -> None:
        """Where the keys come from: the JWKS at ``url``."""
        await self._fetch_jwks(self.url)

    async def _fetch_jwks(self, url: str) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            async with self._http.get(url) as response:
                response.raise_for_status()
                self.set_keys(await response.json())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            # Keep the keys we have; an unknown kid stays unknown until auth answers.
            return

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


class RevocationList:
    """Ids (``jti``) of revoked access tokens, each kept until the token would expire anyway."""

    def __init__(self) -> None:
        self._revoked: dict[str, int] = {}
        self.cursor = 0

    def add(self, jti: str, expires_at: int) -> None:
        self._revoked[jti] = expires_at

    def __contains__(self, jti: object) -> bool:
        return jti in self._revoked

    def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._revoked = {jti: exp for jti, exp in self._revoked.items() if exp > now}


class TokenVerifier:
    """Verifies access tokens: signature by ``kid``, ``exp``, ``iss``, ``aud``, revocation."""

    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        revocations: RevocationList | None = None,
        cache_size: int = 100_000,
        leeway_seconds: int = 5,
    ) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.revocations = revocations
        self._cache: dict[str, Principal] = {}
        self._cache_size = cache_size
        self._leeway = leeway_seconds

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before and not yet expired or revoked, else None."""
        principal = self._cache.get(token)
        if principal is None:
            return None
        if principal.expires_at + self._leeway <= time.time():
            self._cache.pop(token, None)
            return None
        if self.revocations is not None and principal.token_id in self.revocations:
            raise InvalidToken("The token was revoked")
        return principal

    async def verify(self, token: str) -> Principal:
        """The caller behind ``token``, or :class:`InvalidToken`."""
        principal = self.cached(token)
        if principal is not None:
            return principal
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("The token is malformed") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("The token's algorithm is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The token names no signing key")
        key = self.jwks.get(kid)
        if key is None:
            await self.jwks.refresh()
            key = self.jwks.get(kid)
            if key is None:
                raise InvalidToken("The token's signing key is unknown")
        principal = self.decode(token, key)
        if self.revocations is not None and principal.token_id in self.revocations:
            raise InvalidToken("The token was revoked")
        if len(self._cache) >= self._cache_size:
            self._prune_cache()
        self._cache[token] = principal
        return principal

    def decode(self, token: str, key: Any) -> Principal:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"The token is not valid: {exc}") from exc
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise InvalidToken("The token's roles are malformed")
        return Principal(
            subject=str(claims["sub"]),
            roles=frozenset(roles),
            token_id=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            email=claims.get("email"),
        )

    def _prune_cache(self) -> None:
        now = time.time()
        self._cache = {t: p for t, p in self._cache.items() if p.expires_at > now}
        if len(self._cache) >= self._cache_size:
            self._cache.clear()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when absent; InvalidToken if odd."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("The Authorization header is not a Bearer token")
    return token.strip()
