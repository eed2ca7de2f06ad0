"""Alembic environment of the auctions service: its tables and the platform's (outbox, inbox)."""

from alembic import context

from bazaar.auctions.models import metadata
from bazaar.kit.db import run_migrations_online
from bazaar.kit.tables import platform_metadata

run_migrations_online(context.config, [metadata, platform_metadata])
