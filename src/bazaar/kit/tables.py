"""The tables the platform keeps inside every service's own database.

Each service's Alembic migrations create them beside its own tables (its
``migrations/env.py`` targets both metadatas), because they must share the
service's transactions: an outbox row commits with the change it announces, a
handled-message id with the effect of handling it, an idempotent response with the
resource it created.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)

from bazaar.kit.db import new_metadata

platform_metadata = new_metadata()

outbox = Table(
    "outbox",
    platform_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=True),
    Column("type", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

inbox = Table(
    "inbox",
    platform_metadata,
    Column("consumer", String(100), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "message_id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    platform_metadata,
    Column("principal", String(100), nullable=False),
    Column("key", String(255), nullable=False),
    Column("scope", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    # json, not jsonb: a replayed answer keeps the first answer's exact bytes (key order).
    Column("response", JSON, nullable=True),
    Column("headers", JSON, nullable=True),
    Column("note", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("principal", "scope", "key"),
)
