"""Every query of the auth service, and only here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from bazaar.auth.models import (
    LoginFailure,
    RefreshToken,
    RefreshTokenFamily,
    RevokedToken,
    ServiceClient,
    SigningKey,
    User,
)

ADMIN_ROLE = "admin"


# --- users ---------------------------------------------------------------------------


async def insert_user(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    email: str,
    display_name: str,
    password_hash: str,
    roles: Sequence[str],
    now: datetime,
) -> User | None:
    """The new user, or None when the email is taken."""
    result = await session.scalars(
        insert(User)
        .values(
            id=user_id,
            email=email,
            display_name=display_name,
            password_hash=password_hash,
            roles=list(roles),
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[User.email])
        .returning(User)
    )
    return result.first()


async def user_by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id, populate_existing=True)


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.scalars(select(User).where(User.email == email))
    return result.first()


async def users_by_email_prefix(
    session: AsyncSession, prefix: str, *, after_email: str | None, limit: int
) -> Sequence[User]:
    """Users whose email starts with ``prefix``, by email, after ``after_email``."""
    query = select(User).order_by(User.email).limit(limit)
    if prefix:
        query = query.where(User.email.startswith(prefix, autoescape=True))
    if after_email is not None:
        query = query.where(User.email > after_email)
    return (await session.scalars(query)).all()


async def set_user_roles(
    session: AsyncSession, user_id: uuid.UUID, roles: Sequence[str], now: datetime
) -> User | None:
    result = await session.scalars(
        update(User)
        .where(User.id == user_id)
        .values(roles=list(roles), updated_at=now)
        .returning(User)
        .execution_options(populate_existing=True)
    )
    return result.first()


async def set_password_hash(
    session: AsyncSession, user_id: uuid.UUID, password_hash: str, now: datetime
) -> None:
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(password_hash=password_hash, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def admin_exists(session: AsyncSession) -> bool:
    result = await session.scalar(select(exists().where(User.roles.contains([ADMIN_ROLE]))))
    return bool(result)


async def count_admins(session: AsyncSession) -> int:
    result = await session.scalar(select(func.count()).where(User.roles.contains([ADMIN_ROLE])))
    return int(result or 0)


# --- signing keys --------------------------------------------------------------------


async def active_signing_key(session: AsyncSession) -> SigningKey | None:
    result = await session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None)))
    return result.first()


async def insert_signing_key(
    session: AsyncSession,
    *,
    kid: str,
    private_key_pem: str,
    public_jwk: dict[str, Any],
    now: datetime,
) -> None:
    await session.execute(
        insert(SigningKey).values(
            kid=kid, private_key_pem=private_key_pem, public_jwk=public_jwk, created_at=now
        )
    )


async def retire_active_signing_key(session: AsyncSession, now: datetime) -> None:
    await session.execute(
        update(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .values(retired_at=now)
        .execution_options(synchronize_session=False)
    )


async def signing_keys_retired_after(
    session: AsyncSession, retired_after: datetime
) -> Sequence[SigningKey]:
    """The active key and the keys retired after ``retired_after``, newest first."""
    result = await session.scalars(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None) | (SigningKey.retired_at > retired_after))
        .order_by(SigningKey.created_at.desc())
    )
    return result.all()


async def delete_signing_keys_retired_before(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(
        delete(SigningKey)
        .where(SigningKey.retired_at < before)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


# --- refresh tokens ------------------------------------------------------------------


async def insert_refresh_family(
    session: AsyncSession, family_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> None:
    await session.execute(
        insert(RefreshTokenFamily).values(id=family_id, user_id=user_id, created_at=now)
    )


async def insert_refresh_token(
    session: AsyncSession,
    *,
    family_id: uuid.UUID,
    token_hash: str,
    issued_at: datetime,
    expires_at: datetime,
    access_jti: str,
    access_expires_at: datetime,
) -> None:
    await session.execute(
        insert(RefreshToken).values(
            id=uuid.uuid4(),
            family_id=family_id,
            token_hash=token_hash,
            issued_at=issued_at,
            expires_at=expires_at,
            access_jti=access_jti,
            access_expires_at=access_expires_at,
        )
    )


async def refresh_token_by_hash(
    session: AsyncSession, token_hash: str, *, for_update: bool = False
) -> tuple[RefreshToken, RefreshTokenFamily] | None:
    """The refresh token and its family; ``for_update`` locks both until the transaction ends."""
    query = (
        select(RefreshToken, RefreshTokenFamily)
        .join(RefreshTokenFamily, RefreshTokenFamily.id == RefreshToken.family_id)
        .where(RefreshToken.token_hash == token_hash)
        .execution_options(populate_existing=True)
    )
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    if row is None:
        return None
    return row[0], row[1]


async def mark_refresh_token_used(
    session: AsyncSession, refresh_token_id: uuid.UUID, now: datetime
) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == refresh_token_id)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )


async def revoke_refresh_family(
    session: AsyncSession, family_id: uuid.UUID, now: datetime, reason: str
) -> bool:
    """Revoke the family; False when it was revoked already."""
    result = await session.execute(
        update(RefreshTokenFamily)
        .where(RefreshTokenFamily.id == family_id, RefreshTokenFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) > 0


async def live_access_tokens_of_family(
    session: AsyncSession, family_id: uuid.UUID, now: datetime
) -> list[tuple[str, datetime]]:
    """``(jti, expires_at)`` of the access tokens issued in the family that have not expired."""
    result = await session.execute(
        select(RefreshToken.access_jti, RefreshToken.access_expires_at).where(
            RefreshToken.family_id == family_id, RefreshToken.access_expires_at > now
        )
    )
    return [(jti, expires_at) for jti, expires_at in result.all()]


async def live_access_tokens_of_user(
    session: AsyncSession, user_id: uuid.UUID, now: datetime
) -> list[tuple[str, datetime]]:
    result = await session.execute(
        select(RefreshToken.access_jti, RefreshToken.access_expires_at)
        .join(RefreshTokenFamily, RefreshTokenFamily.id == RefreshToken.family_id)
        .where(RefreshTokenFamily.user_id == user_id, RefreshToken.access_expires_at > now)
    )
    return [(jti, expires_at) for jti, expires_at in result.all()]


async def delete_expired_refresh_tokens(session: AsyncSession, now: datetime) -> int:
    """Delete refresh tokens past their expiry, then the families left empty."""
    result = await session.execute(
        delete(RefreshToken)
        .where(RefreshToken.expires_at < now, RefreshToken.access_expires_at < now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        delete(RefreshTokenFamily)
        .where(~exists().where(RefreshToken.family_id == RefreshTokenFamily.id))
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


# --- service clients -----------------------------------------------------------------


async def service_client(
    session: AsyncSession, client_id: str, *, for_update: bool = False
) -> ServiceClient | None:
    query = (
        select(ServiceClient)
        .where(ServiceClient.client_id == client_id)
        .execution_options(populate_existing=True)
    )
    if for_update:
        query = query.with_for_update()
    return (await session.scalars(query)).first()


async def insert_service_client(
    session: AsyncSession, client_id: str, secret_hash: str, roles: Sequence[str], now: datetime
) -> bool:
    """Add the client; False when one with this id exists."""
    result = await session.execute(
        insert(ServiceClient)
        .values(
            client_id=client_id,
            secret_hash=secret_hash,
            roles=list(roles),
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[ServiceClient.client_id])
        .returning(ServiceClient.client_id)
    )
    return result.first() is not None


async def update_service_client(
    session: AsyncSession, client_id: str, secret_hash: str, roles: Sequence[str], now: datetime
) -> None:
    await session.execute(
        update(ServiceClient)
        .where(ServiceClient.client_id == client_id)
        .values(secret_hash=secret_hash, roles=list(roles), updated_at=now)
        .execution_options(synchronize_session=False)
    )


# --- revoked access tokens -----------------------------------------------------------


async def insert_revoked_token(
    session: AsyncSession, *, jti: str, subject: str, expires_at: datetime, now: datetime
) -> bool:
    """Record a revocation; False when the token was revoked already.

    Callers hold the ``revocations`` advisory lock (see :class:`RevokedToken`).
    """
    result = await session.execute(
        insert(RevokedToken)
        .values(jti=jti, subject=subject, expires_at=expires_at, revoked_at=now)
        .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
        .returning(RevokedToken.seq)
    )
    return result.first() is not None


async def is_revoked(session: AsyncSession, jti: str) -> bool:
    result = await session.scalar(select(exists().where(RevokedToken.jti == jti)))
    return bool(result)


async def revocations_after(
    session: AsyncSession, after: int, limit: int
) -> Sequence[RevokedToken]:
    """Revocations with ``seq`` above ``after``, in order, expired ones included."""
    result = await session.scalars(
        select(RevokedToken).where(RevokedToken.seq > after).order_by(RevokedToken.seq).limit(limit)
    )
    return result.all()


async def delete_revocations_expired_before(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(
        delete(RevokedToken)
        .where(RevokedToken.expires_at < before)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


# --- failed logins -------------------------------------------------------------------


async def recent_failures_of_account(
    session: AsyncSession, account: str, since: datetime, limit: int
) -> list[datetime]:
    """When the account's failed logins since ``since`` happened, newest first."""
    return await _recent_failures(session, LoginFailure.account, account, since, limit)


async def recent_failures_of_address(
    session: AsyncSession, address: str, since: datetime, limit: int
) -> list[datetime]:
    """When the address's failed logins since ``since`` happened, newest first."""
    return await _recent_failures(session, LoginFailure.address, address, since, limit)


async def _recent_failures(
    session: AsyncSession,
    column: InstrumentedAttribute[Any],
    value: str,
    since: datetime,
    limit: int,
) -> list[datetime]:
    result = await session.scalars(
        select(LoginFailure.failed_at)
        .where(column == value, LoginFailure.failed_at > since)
        .order_by(LoginFailure.failed_at.desc())
        .limit(limit)
    )
    return list(result.all())


async def record_login_failure(
    session: AsyncSession, account: str, address: str, now: datetime
) -> None:
    await session.execute(
        insert(LoginFailure).values(account=account, address=address, failed_at=now)
    )


async def clear_account_failures(session: AsyncSession, account: str) -> None:
    """Forget the account's failures; they still count against their addresses."""
    await session.execute(
        update(LoginFailure)
        .where(LoginFailure.account == account)
        .values(account=None)
        .execution_options(synchronize_session=False)
    )


async def delete_login_failures_before(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(
        delete(LoginFailure)
        .where(LoginFailure.failed_at < before)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
