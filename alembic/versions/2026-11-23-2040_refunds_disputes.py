"""refunds, disputes and reconciliation

Revision ID: 0007_refunds_disputes
Revises: 0006_payout_accounts
Create Date: 2026-11-23 20:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_refunds_disputes"
down_revision: str | None = "0006_payout_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
