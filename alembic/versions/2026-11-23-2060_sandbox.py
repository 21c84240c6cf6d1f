"""sandbox Stripe objects

Revision ID: 0009_sandbox
Revises: 0008_payouts
Create Date: 2026-11-23 20:60:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_sandbox"
down_revision: str | None = "0008_payouts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
