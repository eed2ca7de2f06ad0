"""order reservation per saga round

Revision ID: b7e2c41d9a10
Revises: faf413994080
Create Date: 2026-11-25 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e2c41d9a10"
down_revision: str | None = "faf413994080"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("reservation_id", sa.UUID(), nullable=True))
    op.execute("UPDATE orders SET reservation_id = id")
    op.alter_column("orders", "reservation_id", nullable=False)
    op.create_unique_constraint(op.f("uq_orders_reservation_id"), "orders", ["reservation_id"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_orders_reservation_id"), "orders", type_="unique")
    op.drop_column("orders", "reservation_id")
