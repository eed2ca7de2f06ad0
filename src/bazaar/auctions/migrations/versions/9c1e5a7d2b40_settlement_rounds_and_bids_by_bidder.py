"""settlement rounds (support's retry) and bids by bidder

Revision ID: 9c1e5a7d2b40
Revises: 4ff3664b68ce
Create Date: 2026-11-25 15:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9c1e5a7d2b40"
down_revision: str | None = "4ff3664b68ce"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "settlement_attempts",
        sa.Column("round", sa.Integer(), server_default="1", nullable=False),
    )
    op.create_index(
        "ix_bids_bidder_auction", "bids", ["bidder_id", "auction_id", "amount"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_bids_bidder_auction", table_name="bids")
    op.drop_column("settlement_attempts", "round")
