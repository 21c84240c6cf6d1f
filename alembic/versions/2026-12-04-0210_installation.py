"""installation: this database's namespace for outgoing Stripe idempotency keys

Revision ID: 0013_installation
Revises: 0012_payin_review
Create Date: 2026-12-04 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013_installation"
down_revision: str | None = "0012_payin_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "installation",
        sa.Column("singleton", sa.Boolean(), nullable=False),
        sa.Column("namespace", sa.String(length=32), nullable=False),
        sa.Column(
            "legacy_ceilings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("singleton", name=op.f("installation_singleton_check")),
        sa.PrimaryKeyConstraint("singleton", name=op.f("installation_pkey")),
    )
    # Random, made here once per database; rows that already exist keep their old keys
    # (the highest id per operation is their ceiling).
    op.execute(
        """
        INSERT INTO installation (singleton, namespace, legacy_ceilings)
        SELECT true,
               substr(replace(gen_random_uuid()::text, '-', ''), 1, 16),
               jsonb_build_object(
                   'withdrawal', (SELECT coalesce(max(id), 0) FROM withdrawals),
                   'refund', (SELECT coalesce(max(id), 0) FROM refunds),
                   'checkout_session', (SELECT coalesce(max(id), 0) FROM orders),
                   'payment_intent', (SELECT coalesce(max(id), 0) FROM orders)
               )
        """
    )


def downgrade() -> None:
    op.drop_table("installation")
