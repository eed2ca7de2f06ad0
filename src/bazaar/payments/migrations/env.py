"""Alembic environment of the payments service: its tables and the platform's (outbox, inbox)."""

from alembic import context

from bazaar.kit.db import run_migrations_online
from bazaar.kit.tables import platform_metadata
from bazaar.payments.models import metadata

run_migrations_online(context.config, [metadata, platform_metadata])
