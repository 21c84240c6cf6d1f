"""refunds of completed escrows paid from the wallet

Revision ID: 0023_money
Revises: 0022_wallet_cashouts
Create Date: 2026-12-04 13:10:00

- ``escrow_refunds``: an admin refund of a completed wallet-funded escrow, reversing the
  settlement back into the customer's wallet (no order, no Stripe object).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_money"
down_revision: str | None = "0022_wallet_cashouts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "escrow_refunds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("escrow_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payee_share", sa.BigInteger(), nullable=False),
        sa.Column("fee_share", sa.BigInteger(), nullable=False),
        sa.Column("platform_covered", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("escrow_refunds_amount_positive_check")),
        sa.CheckConstraint(
            "payee_share >= 0 AND fee_share >= 0 AND platform_covered >= 0"
            " AND platform_covered <= payee_share AND payee_share + fee_share = amount",
            name=op.f("escrow_refunds_split_check"),
        ),
        sa.ForeignKeyConstraint(
            ["escrow_id"], ["escrows.id"], name=op.f("escrow_refunds_escrow_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("escrow_refunds_user_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("escrow_refunds_pkey")),
        sa.UniqueConstraint(
            "requested_by",
            "idempotency_key",
            name=op.f("escrow_refunds_requested_by_idempotency_key_key"),
        ),
    )
    op.create_index("ix_escrow_refunds_escrow_id", "escrow_refunds", ["escrow_id"])


def downgrade() -> None:
    op.drop_index("ix_escrow_refunds_escrow_id", table_name="escrow_refunds")
    op.drop_table("escrow_refunds")
