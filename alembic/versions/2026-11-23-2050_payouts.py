"""withdrawals and payouts

Revision ID: 0008_payouts
Revises: 0007_refunds_disputes
Create Date: 2026-11-23 20:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_payouts"
down_revision: str | None = "0007_refunds_disputes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
