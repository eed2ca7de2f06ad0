"""Signing keys: RSA key pairs kept in the auth database, and each replica's copy of them.

One key is active (``retired_at`` NULL). Rotation retires it and makes a new one
active; a retired key stays in the JWKS until every token it may have signed has
expired. Each replica holds the keys in memory (:class:`KeyRing`), re-reads them
every few seconds (another replica or the CLI may rotate) and at once when a token
names a ``kid`` it does not know.

A new key is published before it is used: a replica signs with the newest key that
has been in the database for ``publish_delay`` seconds, so by the time a token
carries the new ``kid``, every replica serves a JWKS that contains it and a gateway
that fetches the keys on an unknown ``kid`` finds it whichever replica it asks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.auth import repository
from bazaar.kit.db import transaction
from bazaar.kit.logging import get_logger
from bazaar.kit.tokens import ALGORITHM, JwksCache

log = get_logger(__name__)

RSA_KEY_BITS = 2048
ENCRYPTED_PEM_HEADER = "-----BEGIN ENCRYPTED PRIVATE KEY-----"
# Slack on top of the token lifetime before a retired key leaves the JWKS: clock skew
# between replicas and the verifiers' leeway.
RETENTION_MARGIN_SECONDS = 60


@dataclass(frozen=True, slots=True)
class NewSigningKey:
    """A freshly generated key pair, as stored."""

    kid: str
    private_key_pem: str
    public_jwk: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PublishedKey:
    kid: str
    created_at: datetime
    retired_at: datetime | None


def generate_signing_key(passphrase: bytes | None = None) -> NewSigningKey:
    """A new RSA-2048 key pair; its ``kid`` is its RFC 7638 thumbprint. Takes ~0.1 s of CPU.

    With ``passphrase`` the private key is stored encrypted (PKCS#8)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    kid = jwk_thumbprint(jwk)
    jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
    return NewSigningKey(kid=kid, private_key_pem=pem, public_jwk=jwk)


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of an RSA JWK, base64url without padding."""
    members = {"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def choose_signing_kid(
    keys: Sequence[PublishedKey], now: datetime, publish_delay: timedelta
) -> str | None:
    """The key to sign with: the newest one published at least ``publish_delay`` ago.

    When none is that old (a fresh deployment, or rotations in quick succession), the
    one published longest. ``keys`` holds the active key and the retired ones still in
    the JWKS.
    """
    if not keys:
        return None
    newest_first = sorted(keys, key=lambda key: key.created_at, reverse=True)
    for key in newest_first:
        if key.created_at <= now - publish_delay:
            return key.kid
    return newest_first[-1].kid


def jwks_retention(
    access_ttl_seconds: int, publish_delay_seconds: float, reload_interval_seconds: float
) -> timedelta:
    """How long a retired key stays in the JWKS.

    After retirement, a key may still sign for ``publish_delay`` (until its successor
    is published everywhere), or for one reload interval on a replica that has not yet
    seen the rotation; its last tokens then live for the access-token lifetime.
    """
    return timedelta(
        seconds=access_ttl_seconds
        + max(publish_delay_seconds, reload_interval_seconds)
        + RETENTION_MARGIN_SECONDS
    )


class LocalJwksCache(JwksCache):
    """The verifier's keys, filled by the auth service itself: no HTTP to its own JWKS.

    An unknown ``kid`` (another replica rotated a moment ago) makes it re-read the keys
    from the database, at most once per ``min_refresh_interval``.
    """

    def __init__(
        self, reload: Callable[[], Awaitable[None]], *, min_refresh_interval: float = 1.0
    ) -> None:
        super().__init__("", min_refresh_interval=min_refresh_interval)
        self._reload = reload

    async def _fetch(self) -> None:
        await self._reload()


class KeyRing:
    """This replica's copy of the signing keys: signs access tokens, serves the JWKS."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        access_ttl_seconds: int,
        publish_delay_seconds: float,
        reload_interval_seconds: float,
        passphrase: bytes | None = None,
    ) -> None:
        self._sessions = sessions
        self._passphrase = passphrase
        self._publish_delay = timedelta(seconds=publish_delay_seconds)
        self._reload_interval = reload_interval_seconds
        self.retention = jwks_retention(
            access_ttl_seconds, publish_delay_seconds, reload_interval_seconds
        )
        self._keys: tuple[PublishedKey, ...] = ()
        self._private: dict[str, rsa.RSAPrivateKey] = {}
        self._jwks: dict[str, Any] = {"keys": []}
        self.jwks_cache = LocalJwksCache(self.reload_or_keep)

    def jwks(self) -> dict[str, Any]:
        """The public keys to publish (active first, then retired ones still in use)."""
        return self._jwks

    @property
    def kids(self) -> list[str]:
        return [key.kid for key in self._keys]

    async def reload(self) -> None:
        """Re-read the active key and the retired keys still within their retention."""
        now = datetime.now(UTC)
        async with transaction(self._sessions) as session:
            rows = await repository.signing_keys_retired_after(session, now - self.retention)
            loaded = [
                (
                    PublishedKey(kid=row.kid, created_at=row.created_at, retired_at=row.retired_at),
                    row.public_jwk,
                    row.private_key_pem,
                )
                for row in rows
            ]
        private: dict[str, rsa.RSAPrivateKey] = {}
        for key, _, pem in loaded:
            private[key.kid] = self._private.get(key.kid) or load_private_key(pem, self._passphrase)
        self._private = private
        self._keys = tuple(key for key, _, _ in loaded)
        self._jwks = {"keys": [dict(jwk) for _, jwk, _ in loaded]}
        self.jwks_cache.set_keys(self._jwks)

    def sign(self, claims: dict[str, Any], now: datetime) -> str:
        """An RS256 JWT of ``claims``, with the signing key's ``kid`` in its header."""
        kid = choose_signing_kid(self._keys, now, self._publish_delay)
        if kid is None:
            raise RuntimeError("no signing key is loaded")
        return jwt.encode(claims, self._private[kid], algorithm=ALGORITHM, headers={"kid": kid})

    async def reload_or_keep(self) -> None:
        """:meth:`reload`, or, when it fails, keep the keys loaded and say why (a reload in
        the background or on an unknown ``kid`` must not take signing down)."""
        try:
            await self.reload()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("signing_keys_reload_failed", error=repr(exc))
        except SigningKeyLocked as exc:
            # A key made elsewhere with another passphrase: keep signing with the keys
            # loaded, and say so loudly (tokens it signs will not be issued here).
            log.error("signing_keys_reload_failed", error=str(exc))

    async def keep_reloading(self) -> None:
        """Re-read the keys every reload interval, until cancelled."""
        while True:
            await asyncio.sleep(self._reload_interval)
            await self.reload_or_keep()


class SigningKeyLocked(RuntimeError):
    """A stored private key cannot be opened: encrypted, and no (or another) passphrase."""


def load_private_key(pem: str, passphrase: bytes | None) -> rsa.RSAPrivateKey:
    """A stored private key; encrypted ones are opened with ``passphrase`` (taking ~35 ms
    of CPU, once per key and process), unencrypted ones (made without a passphrase) as
    they are."""
    encrypted = ENCRYPTED_PEM_HEADER in pem
    if encrypted and not passphrase:
        raise SigningKeyLocked(
            "a signing key in the database is encrypted: set BAZAAR_AUTH_SIGNING_KEY_PASSPHRASE"
        )
    try:
        key = serialization.load_pem_private_key(
            pem.encode(), password=passphrase if encrypted else None
        )
    except ValueError as exc:
        raise SigningKeyLocked(
            "a signing key in the database does not open with BAZAAR_AUTH_SIGNING_KEY_PASSPHRASE"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("a signing key in the database is not an RSA key")
    return key
