"""The auth service's rules: accounts, logins, token grants, revocation, signing keys.

Plain async functions over the session they are given; they never commit (the
request or the caller's unit of work does) and never speak HTTP. What they need
besides the session (keys, password hashing, token lifetimes, throttling limits)
comes in one :class:`AuthContext`, built once by ``app.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.auth import repository
from bazaar.auth.errors import (
    EmailTaken,
    InvalidClient,
    InvalidGrant,
    LastAdmin,
    LoginThrottled,
    UserNotFound,
)
from bazaar.auth.keys import KeyRing, generate_signing_key
from bazaar.auth.models import User
from bazaar.auth.schemas import (
    Introspection,
    RevocationEntry,
    RevocationFeed,
    UserCreate,
    UserPage,
    UserRead,
)
from bazaar.auth.settings import AuthSettings
from bazaar.contracts.auth import AccessTokenRevoked, UserRegistered, UserRolesChanged
from bazaar.kit.db import advisory_lock
from bazaar.kit.errors import InvalidToken, ValidationFailed
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.outbox import publish_message
from bazaar.kit.pagination import InvalidCursor, PageParams, decode_cursor, encode_cursor
from bazaar.kit.tokens import ALL_ROLES, ROLE_SERVICE, RevocationList, TokenVerifier

log = get_logger(__name__)

SOURCE = "bazaar.auth"
CUSTOMER = "customer"
ADMIN = "admin"
SERVICE_CLIENT_SUBJECT_PREFIX = "client:"
ACCESS_TOKEN_TYPE = "Bearer"
REFRESH_TOKEN_TYPE = "refresh_token"

# Advisory locks (see bazaar.kit.db.advisory_lock).
SIGNING_KEYS_LOCK = "bazaar-auth:signing-keys"
ADMINS_LOCK = "bazaar-auth:admins"
REVOCATIONS_LOCK = "bazaar-auth:revocations"
LOGIN_LOCK_PREFIX = "bazaar-auth:login:"
MAX_EMAIL_LENGTH = 320
# How often a replica drops expired entries from its revocation list (as the gateway does).
PRUNE_REVOCATIONS_EVERY_SECONDS = 60.0

INACTIVE = Introspection(active=False)


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_email(email: str) -> str:
    """Emails are compared and stored lower-cased: ``Alice@X.org`` is ``alice@x.org``."""
    return email.strip().lower()


def normalize_roles(roles: Iterable[str]) -> list[str]:
    """The roles, sorted, without repeats, always with ``customer``; unknown ones refused."""
    wanted = {*roles, CUSTOMER}
    unknown = sorted(wanted - ALL_ROLES)
    if unknown:
        raise ValidationFailed(
            f"Unknown roles: {', '.join(unknown)}",
            errors=[{"field": "roles", "message": f"unknown role {role!r}"} for role in unknown],
        )
    return sorted(wanted)


def hash_refresh_token(token: str) -> str:
    """Refresh tokens are 256 random bits, so SHA-256 (searchable) is as good as a slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_jwt(token: str) -> bool:
    """Access tokens are JWTs (three dot-separated parts); refresh tokens have no dots."""
    return token.count(".") == 2


def password_hasher(settings: AuthSettings) -> PasswordHasher:
    """An argon2id hasher with the configured cost (hashes carry their own parameters)."""
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost_kib,
        parallelism=settings.argon2_parallelism,
    )


class Passwords:
    """argon2id hashing, run in worker threads so that a login does not stall the loop."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; with no hash (unknown account) it costs the same."""
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
            await self._verify(self._dummy_hash, password)
            return False
        return await self._verify(password_hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self._hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    issuer: str
    audience: str
    access_ttl_seconds: int
    refresh_ttl_seconds: int


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    window_seconds: int
    max_failures_per_account: int
    max_failures_per_address: int


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What the rules need besides a session; one per process, built in ``app.py``."""

    keyring: KeyRing
    passwords: Passwords
    tokens: TokenPolicy
    throttle: ThrottlePolicy
    # Verifies access tokens with the keyring's keys (introspection, revocation).
    verifier: TokenVerifier


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str | None = None


@dataclass(frozen=True, slots=True)
class RevokedAccessToken:
    jti: str
    expires_at: int


def user_read(user: User) -> UserRead:
    return UserRead(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        roles=sorted(user.roles),
        created_at=user.created_at,
    )


# --- accounts ------------------------------------------------------------------------


async def register_user(session: AsyncSession, passwords: Passwords, data: UserCreate) -> UserRead:
    """A new customer account (``POST /api/auth/register``)."""
    return await create_account(
        session,
        passwords,
        email=data.email,
        password=data.password,
        display_name=data.display_name,
        roles=[CUSTOMER],
    )


async def create_account(
    session: AsyncSession,
    passwords: Passwords,
    *,
    email: str,
    password: str,
    display_name: str,
    roles: Iterable[str],
) -> UserRead:
    """Create a user with ``roles`` (plus ``customer``) and announce it; EmailTaken if taken."""
    roles = normalize_roles(roles)
    # Hash first, also when the email turns out to be taken: the answer takes as long.
    password_hash = await passwords.hash(password)
    user = await repository.insert_user(
        session,
        user_id=uuid.uuid4(),
        email=normalize_email(email),
        display_name=display_name,
        password_hash=password_hash,
        roles=roles,
        now=utcnow(),
    )
    if user is None:
        raise EmailTaken("An account with this email exists already")
    await publish_message(
        session,
        UserRegistered(
            user_id=user.id,
            email=user.email,
            display_name=user.display_name,
            roles=sorted(user.roles),
            created_at=user.created_at,
        ),
        source=SOURCE,
        key=str(user.id),
        user_id=user.id,
    )
    log.info("user_registered", user_id=str(user.id), roles=roles)
    return user_read(user)


async def ensure_bootstrap_admin(
    session: AsyncSession, passwords: Passwords, email: str, password: str
) -> UserRead | None:
    """Create the first admin when no admin exists yet; None when there was nothing to do.

    Replicas starting together serialise on an advisory lock, so one admin is made. An
    existing account with the email is left alone (and logged): its password is not the
    configured one, and making it admin would hand the role to whoever registered it.
    """
    data = UserCreate(email=email, password=password, display_name="Administrator")
    await advisory_lock(session, ADMINS_LOCK)
    if await repository.admin_exists(session):
        return None
    if await repository.user_by_email(session, normalize_email(data.email)) is not None:
        log.warning("bootstrap_admin_email_taken", email=normalize_email(data.email))
        return None
    admin = await create_account(
        session,
        passwords,
        email=data.email,
        password=data.password,
        display_name=data.display_name,
        roles=[CUSTOMER, ADMIN],
    )
    log.info("bootstrap_admin_created", user_id=str(admin.id))
    return admin


async def get_user(session: AsyncSession, subject: str) -> UserRead:
    """The user a token's ``sub`` names."""
    try:
        user_id = uuid.UUID(subject)
    except ValueError as exc:
        raise UserNotFound() from exc
    user = await repository.user_by_id(session, user_id)
    if user is None:
        raise UserNotFound()
    return user_read(user)


async def find_users(session: AsyncSession, email: str | None, page: PageParams) -> UserPage:
    """Users whose email starts with ``email`` (all users without it), by email."""
    after_email: str | None = None
    if page.cursor is not None:
        (after_email,) = decode_cursor(page.cursor, 1)
        if not isinstance(after_email, str):
            raise InvalidCursor(errors=[{"field": "cursor", "message": "malformed"}])
    rows = await repository.users_by_email_prefix(
        session, normalize_email(email or ""), after_email=after_email, limit=page.limit + 1
    )
    items = [user_read(user) for user in rows[: page.limit]]
    next_cursor = encode_cursor(items[-1].email) if len(rows) > page.limit else None
    return UserPage(items=items, next_cursor=next_cursor)


async def change_roles(
    session: AsyncSession, user_id: uuid.UUID, roles: Iterable[str], changed_by: str
) -> tuple[UserRead, list[RevokedAccessToken]]:
    """Set a user's roles (``customer`` always stays) and announce it.

    Taking a role away also revokes the user's live access tokens, so the change holds
    at once rather than when they expire; refresh tokens stay, so clients simply
    refresh and get tokens with the new roles.
    """
    new_roles = normalize_roles(roles)
    # Serialises role changes, so two admins cannot demote each other to no admin at all.
    await advisory_lock(session, ADMINS_LOCK)
    user = await repository.user_by_id(session, user_id)
    if user is None:
        raise UserNotFound()
    removed = set(user.roles) - set(new_roles)
    if ADMIN in removed and await repository.count_admins(session) <= 1:
        raise LastAdmin("Make another user admin first")
    now = utcnow()
    updated = await repository.set_user_roles(session, user_id, new_roles, now)
    if updated is None:
        raise UserNotFound()
    await publish_message(
        session,
        UserRolesChanged(user_id=user_id, roles=new_roles, changed_by=changed_by),
        source=SOURCE,
        key=str(user_id),
        user_id=user_id,
    )
    revoked: list[RevokedAccessToken] = []
    if removed:
        live = await repository.live_access_tokens_of_user(session, user_id, now)
        revoked = await revoke_access_tokens(session, str(user_id), live, now)
    log.info("user_roles_changed", user_id=str(user_id), roles=new_roles, changed_by=changed_by)
    return user_read(updated), revoked


# --- token grants --------------------------------------------------------------------


def mint_access_token(
    context: AuthContext,
    *,
    subject: str,
    roles: Sequence[str],
    email: str | None,
    now: datetime,
) -> tuple[str, str, datetime]:
    """A signed access token: ``(token, jti, expires_at)``."""
    issued_at = int(now.timestamp())
    expires_at = issued_at + context.tokens.access_ttl_seconds
    jti = uuid.uuid4().hex
    claims: dict[str, Any] = {
        "iss": context.tokens.issuer,
        "aud": context.tokens.audience,
        "sub": subject,
        "iat": issued_at,
        "exp": expires_at,
        "jti": jti,
        "roles": sorted(roles),
    }
    if email is not None:
        claims["email"] = email
    token = context.keyring.sign(claims, now)
    return token, jti, datetime.fromtimestamp(expires_at, UTC)


async def issue_user_tokens(
    session: AsyncSession,
    context: AuthContext,
    user: User,
    now: datetime,
    family_id: uuid.UUID | None = None,
) -> IssuedTokens:
    """An access token and a refresh token, the latter in ``family_id`` (a new family if None)."""
    access_token, jti, access_expires_at = mint_access_token(
        context, subject=str(user.id), roles=user.roles, email=user.email, now=now
    )
    if family_id is None:
        family_id = uuid.uuid4()
        await repository.insert_refresh_family(session, family_id, user.id, now)
    refresh_token = secrets.token_urlsafe(32)
    await repository.insert_refresh_token(
        session,
        family_id=family_id,
        token_hash=hash_refresh_token(refresh_token),
        issued_at=now,
        expires_at=now + timedelta(seconds=context.tokens.refresh_ttl_seconds),
        access_jti=jti,
        access_expires_at=access_expires_at,
    )
    return IssuedTokens(
        access_token=access_token,
        expires_in=context.tokens.access_ttl_seconds,
        refresh_token=refresh_token,
    )


def retry_after_seconds(
    failures_newest_first: Sequence[datetime], maximum: int, window: timedelta, now: datetime
) -> int | None:
    """Seconds until fewer than ``maximum`` failures remain in the window; None if already."""
    if len(failures_newest_first) < maximum:
        return None
    frees_at = failures_newest_first[maximum - 1] + window
    return max(1, math.ceil((frees_at - now).total_seconds()))


async def check_login_throttle(
    session: AsyncSession, policy: ThrottlePolicy, account: str, address: str, now: datetime
) -> None:
    """LoginThrottled when the account or the address has too many recent failed logins."""
    window = timedelta(seconds=policy.window_seconds)
    since = now - window
    by_account = await repository.recent_failures_of_account(
        session, account, since, policy.max_failures_per_account
    )
    by_address = await repository.recent_failures_of_address(
        session, address, since, policy.max_failures_per_address
    )
    waits = [
        wait
        for wait in (
            retry_after_seconds(by_account, policy.max_failures_per_account, window, now),
            retry_after_seconds(by_address, policy.max_failures_per_address, window, now),
        )
        if wait is not None
    ]
    if waits:
        log.warning("login_throttled", account=account, address=address)
        raise LoginThrottled(
            "Too many failed logins for this account or address", retry_after=max(waits)
        )


async def login_with_password(
    session: AsyncSession, context: AuthContext, *, email: str, password: str, address: str
) -> IssuedTokens:
    """``grant_type=password``: the same InvalidGrant for an unknown email and a wrong password.

    Attempts on one account serialise on an advisory lock, so parallel guesses cannot
    slip past the failure count.
    """
    # No account's email is longer than the column; a longer name still counts as a failure.
    account = normalize_email(email)[:MAX_EMAIL_LENGTH]
    now = utcnow()
    await advisory_lock(session, LOGIN_LOCK_PREFIX + account)
    await check_login_throttle(session, context.throttle, account, address, now)
    user = await repository.user_by_email(session, account)
    matches = await context.passwords.verify(user.password_hash if user else None, password)
    if user is None or not matches:
        await repository.record_login_failure(session, account, address, now)
        raise InvalidGrant("The email or the password is wrong")
    await repository.clear_account_failures(session, account)
    if context.passwords.needs_rehash(user.password_hash):
        new_hash = await context.passwords.hash(password)
        await repository.set_password_hash(session, user.id, new_hash, now)
    return await issue_user_tokens(session, context, user, now)


async def exchange_refresh_token(
    session: AsyncSession, context: AuthContext, refresh_token: str
) -> IssuedTokens:
    """``grant_type=refresh_token``: rotate the refresh token within its family.

    A spent token presented again means it leaked (or a client misbehaves): the whole
    family is revoked, together with the access tokens it issued that are still live.
    The token's row is locked, so of two concurrent uses exactly one wins and the
    other counts as a reuse.
    """
    now = utcnow()
    found = await repository.refresh_token_by_hash(
        session, hash_refresh_token(refresh_token), for_update=True
    )
    if found is None:
        raise InvalidGrant("The refresh token is not valid")
    token, family = found
    if family.revoked_at is not None:
        raise InvalidGrant("The refresh token was revoked")
    if token.used_at is not None:
        log.warning("refresh_token_reused", family_id=str(family.id), user_id=str(family.user_id))
        await revoke_refresh_family(session, family.id, family.user_id, now, "reuse_detected")
        raise InvalidGrant("The refresh token was used already; its sessions are revoked")
    if token.expires_at <= now:
        raise InvalidGrant("The refresh token has expired")
    user = await repository.user_by_id(session, family.user_id)
    if user is None:
        raise InvalidGrant("The refresh token is not valid")
    await repository.mark_refresh_token_used(session, token.id, now)
    return await issue_user_tokens(session, context, user, now, family_id=family.id)


async def authenticate_client(
    session: AsyncSession, context: AuthContext, *, client_id: str, client_secret: str
) -> IssuedTokens:
    """``grant_type=client_credentials``: a token for a service, ``sub`` = ``client:<id>``."""
    client = await repository.service_client(session, client_id)
    matches = await context.passwords.verify(client.secret_hash if client else None, client_secret)
    if client is None or not matches:
        raise InvalidClient("Unknown client or wrong secret")
    access_token, _, _ = mint_access_token(
        context,
        subject=SERVICE_CLIENT_SUBJECT_PREFIX + client.client_id,
        roles=client.roles,
        email=None,
        now=utcnow(),
    )
    return IssuedTokens(access_token=access_token, expires_in=context.tokens.access_ttl_seconds)


async def ensure_service_client(
    session: AsyncSession,
    passwords: Passwords,
    client_id: str,
    client_secret: str,
    roles: Sequence[str] = (ROLE_SERVICE,),
) -> bool:
    """Create or update a service client so that ``client_secret`` authenticates it.

    Idempotent: an unchanged secret (and roles) leaves the row alone. True when the
    row was created or changed.
    """
    if not client_id or not client_secret:
        raise ValueError("a service client needs an id and a secret")
    wanted_roles = sorted(set(roles))
    now = utcnow()
    client = await repository.service_client(session, client_id, for_update=True)
    if client is None:
        secret_hash = await passwords.hash(client_secret)
        if await repository.insert_service_client(
            session, client_id, secret_hash, wanted_roles, now
        ):
            return True
        # Another process created it meanwhile: fall through and check its secret.
        client = await repository.service_client(session, client_id, for_update=True)
        if client is None:
            raise RuntimeError(f"service client {client_id!r} vanished while being created")
    unchanged = (
        sorted(client.roles) == wanted_roles
        and await passwords.verify(client.secret_hash, client_secret)
        and not passwords.needs_rehash(client.secret_hash)
    )
    if unchanged:
        return False
    secret_hash = await passwords.hash(client_secret)
    await repository.update_service_client(session, client_id, secret_hash, wanted_roles, now)
    return True


# --- introspection and revocation ----------------------------------------------------


async def introspect(session: AsyncSession, context: AuthContext, token: str) -> Introspection:
    """RFC 7662: what ``token`` is, if it is currently valid; ``{active: false}`` otherwise."""
    if looks_like_jwt(token):
        return await _introspect_access_token(session, context, token)
    return await _introspect_refresh_token(session, context, token)


async def _introspect_access_token(
    session: AsyncSession, context: AuthContext, token: str
) -> Introspection:
    try:
        principal = await context.verifier.verify(token)
    except InvalidToken:
        return INACTIVE
    # The verifier allows a few seconds of leeway for clock skew; introspection is strict.
    if principal.expires_at <= utcnow().timestamp():
        return INACTIVE
    # The verifier's revocation list lags the database by up to a poll interval.
    if await repository.is_revoked(session, principal.token_id):
        return INACTIVE
    # Verified just above; read the one claim the principal does not carry.
    claims = jwt.decode(token, options={"verify_signature": False})
    return Introspection(
        active=True,
        sub=principal.subject,
        email=principal.email,
        roles=sorted(principal.roles),
        exp=principal.expires_at,
        iat=int(claims["iat"]),
        jti=principal.token_id,
        token_type=ACCESS_TOKEN_TYPE,
        iss=context.tokens.issuer,
        aud=context.tokens.audience,
    )


async def _introspect_refresh_token(
    session: AsyncSession, context: AuthContext, token: str
) -> Introspection:
    found = await repository.refresh_token_by_hash(session, hash_refresh_token(token))
    if found is None:
        return INACTIVE
    refresh, family = found
    if family.revoked_at is not None or refresh.used_at is not None:
        return INACTIVE
    if refresh.expires_at <= utcnow():
        return INACTIVE
    user = await repository.user_by_id(session, family.user_id)
    if user is None:
        return INACTIVE
    return Introspection(
        active=True,
        sub=str(user.id),
        email=user.email,
        roles=sorted(user.roles),
        exp=int(refresh.expires_at.timestamp()),
        iat=int(refresh.issued_at.timestamp()),
        jti=str(refresh.id),
        token_type=REFRESH_TOKEN_TYPE,
        iss=context.tokens.issuer,
    )


async def revoke_token(
    session: AsyncSession, context: AuthContext, token: str
) -> list[RevokedAccessToken]:
    """RFC 7009: revoke an access token, or a refresh token with its whole family.

    Anything that is not a valid token of ours is ignored (the endpoint answers 200
    whatever happens). Returns the access tokens newly revoked.
    """
    now = utcnow()
    if looks_like_jwt(token):
        try:
            principal = await context.verifier.verify(token)
        except InvalidToken:
            return []
        expires_at = datetime.fromtimestamp(principal.expires_at, UTC)
        return await revoke_access_tokens(
            session, principal.subject, [(principal.token_id, expires_at)], now
        )
    found = await repository.refresh_token_by_hash(
        session, hash_refresh_token(token), for_update=True
    )
    if found is None:
        return []
    _, family = found
    return await revoke_refresh_family(session, family.id, family.user_id, now, "revoked")


async def revoke_refresh_family(
    session: AsyncSession,
    family_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
    reason: str,
) -> list[RevokedAccessToken]:
    """Revoke a refresh-token family and the live access tokens issued in it."""
    if not await repository.revoke_refresh_family(session, family_id, now, reason):
        return []
    live = await repository.live_access_tokens_of_family(session, family_id, now)
    return await revoke_access_tokens(session, str(user_id), live, now)


async def revoke_access_tokens(
    session: AsyncSession,
    subject: str,
    tokens: Sequence[tuple[str, datetime]],
    now: datetime,
) -> list[RevokedAccessToken]:
    """Record ``(jti, expires_at)`` pairs as revoked and announce each; skips expired ones."""
    live = [(jti, expires_at) for jti, expires_at in tokens if expires_at > now]
    if not live:
        return []
    # Numbers revocations in commit order (see models.RevokedToken); always taken last.
    await advisory_lock(session, REVOCATIONS_LOCK)
    revoked: list[RevokedAccessToken] = []
    for jti, expires_at in live:
        if not await repository.insert_revoked_token(
            session, jti=jti, subject=subject, expires_at=expires_at, now=now
        ):
            continue
        await publish_message(
            session,
            AccessTokenRevoked(jti=jti, user_id=subject, expires_at=expires_at),
            source=SOURCE,
            key=subject,
            user_id=subject,
        )
        revoked.append(RevokedAccessToken(jti=jti, expires_at=int(expires_at.timestamp())))
    if revoked:
        log.info("access_tokens_revoked", subject=subject, count=len(revoked))
    return revoked


async def revocation_feed(session: AsyncSession, after: int, limit: int) -> RevocationFeed:
    """Revoked access tokens numbered above ``after`` that have not expired yet, in order."""
    rows = await repository.revocations_after(session, after, limit)
    now = utcnow()
    items = [
        RevocationEntry(jti=row.jti, expires_at=int(row.expires_at.timestamp()), seq=row.seq)
        for row in rows
        if row.expires_at > now
    ]
    # The cursor moves past expired entries too, so nobody reads them again.
    cursor = rows[-1].seq if rows else after
    return RevocationFeed(items=items, cursor=cursor, has_more=len(rows) == limit)


async def follow_revocations(
    session: AsyncSession, revocations: RevocationList, batch: int = 1000
) -> bool:
    """Bring this replica's revocation list up to date; True when more are waiting.

    Expired entries are not pruned here (the poll is frequent): the caller prunes
    every :data:`PRUNE_REVOCATIONS_EVERY_SECONDS`."""
    feed = await revocation_feed(session, revocations.cursor, batch)
    for item in feed.items:
        revocations.add(item.jti, item.expires_at)
    revocations.cursor = feed.cursor
    return feed.has_more


# --- signing keys --------------------------------------------------------------------


async def ensure_signing_key(session: AsyncSession, passphrase: bytes | None) -> str | None:
    """Create the first signing key when there is none (its private half encrypted with
    ``passphrase`` if given); its kid, or None if one existed.

    Replicas starting together serialise on an advisory lock, so only one creates it.
    """
    if await repository.active_signing_key(session) is not None:
        return None
    key = await asyncio.to_thread(generate_signing_key, passphrase)
    await advisory_lock(session, SIGNING_KEYS_LOCK)
    if await repository.active_signing_key(session) is not None:
        return None
    await repository.insert_signing_key(
        session,
        kid=key.kid,
        private_key_pem=key.private_key_pem,
        public_jwk=key.public_jwk,
        now=utcnow(),
    )
    log.info("signing_key_created", kid=key.kid)
    return key.kid


async def rotate_signing_key(session: AsyncSession, passphrase: bytes | None) -> str:
    """Retire the active signing key and make a new one active (encrypted with
    ``passphrase`` if given); the new kid.

    Running replicas pick the new key up at their next reload and sign with it once it
    has been published for ``key_publish_delay_seconds``; the retired key stays in the
    JWKS until the tokens it signed have expired.
    """
    key = await asyncio.to_thread(generate_signing_key, passphrase)
    await advisory_lock(session, SIGNING_KEYS_LOCK)
    now = utcnow()
    await repository.retire_active_signing_key(session, now)
    await repository.insert_signing_key(
        session,
        kid=key.kid,
        private_key_pem=key.private_key_pem,
        public_jwk=key.public_jwk,
        now=now,
    )
    log.info("signing_key_rotated", kid=key.kid)
    return key.kid


# --- housekeeping --------------------------------------------------------------------


async def delete_expired(
    session: AsyncSession, *, login_window_seconds: int, key_retention: timedelta
) -> dict[str, int]:
    """Delete what can no longer matter: expired refresh tokens and revocations, old
    failed logins, and retired keys past their retention (private keys not kept longer
    than needed)."""
    now = utcnow()
    return {
        "refresh_tokens": await repository.delete_expired_refresh_tokens(session, now),
        # A minute late: verifiers accept a token a few seconds past its expiry (leeway).
        "revocations": await repository.delete_revocations_expired_before(
            session, now - timedelta(minutes=1)
        ),
        "login_failures": await repository.delete_login_failures_before(
            session, now - timedelta(seconds=login_window_seconds)
        ),
        "signing_keys": await repository.delete_signing_keys_retired_before(
            session, now - key_retention
        ),
    }
