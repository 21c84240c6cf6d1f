"""pay-ins that differ from their order wait for review

Revision ID: 0012_payin_review
Revises: 0011_earnings_rollups
Create Date: 2026-12-04 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_payin_review"
down_revision: str | None = "0011_earnings_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "'pending', 'succeeded', 'failed', 'expired', 'refunded', 'partially_refunded'"
AFTER = BEFORE + ", 'needs_review'"


def upgrade() -> None:
    op.add_column("orders", sa.Column("review_reason", sa.String(length=64), nullable=True))
    op.add_column("orders", sa.Column("paid_amount", sa.BigInteger(), nullable=True))
    op.add_column("orders", sa.Column("paid_currency", sa.String(length=3), nullable=True))
    op.drop_constraint(op.f("orders_status_check"), "orders", type_="check")
    op.create_check_constraint(op.f("orders_status_check"), "orders", f"status IN ({AFTER})")
    op.create_index(
        "ix_orders_needs_review",
        "orders",
        ["id"],
        postgresql_where=sa.text("status = 'needs_review'"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_needs_review", table_name="orders")
    op.execute("UPDATE orders SET status = 'failed' WHERE status = 'needs_review'")
    op.drop_constraint(op.f("orders_status_check"), "orders", type_="check")
    op.create_check_constraint(op.f("orders_status_check"), "orders", f"status IN ({BEFORE})")
    op.drop_column("orders", "paid_currency")
    op.drop_column("orders", "paid_amount")
    op.drop_column("orders", "review_reason")
