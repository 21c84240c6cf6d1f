"""withdrawals and payouts

Revision ID: 0008_payouts
Revises: 0007_refunds_disputes
Create Date: 2026-11-23 20:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_payouts"
down_revision: str | None = "0007_refunds_disputes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "payouts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("stripe_payout_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_account_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("arrival_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_created", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'in_transit', 'paid', 'failed', 'canceled')",
            name=op.f("payouts_status_check"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("payouts_user_id_fkey")),
        sa.PrimaryKeyConstraint("id", name=op.f("payouts_pkey")),
        sa.UniqueConstraint("stripe_payout_id", name=op.f("payouts_stripe_payout_id_key")),
    )
    op.create_index("ix_payouts_user_id_created", "payouts", ["user_id", "created"], unique=False)
    op.create_table(
        "withdrawals",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("stripe_account_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_transfer_id", sa.String(length=255), nullable=True),
        sa.Column("amount_reversed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transferred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'transferred', 'failed', 'reversed')",
            name=op.f("withdrawals_status_check"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("withdrawals_amount_positive_check")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("withdrawals_user_id_fkey")),
        sa.PrimaryKeyConstraint("id", name=op.f("withdrawals_pkey")),
        sa.UniqueConstraint("stripe_transfer_id", name=op.f("withdrawals_stripe_transfer_id_key")),
        sa.UniqueConstraint(
            "user_id", "idempotency_key", name=op.f("withdrawals_user_id_idempotency_key_key")
        ),
    )
    op.create_index(
        "ix_withdrawals_status_next_attempt_at",
        "withdrawals",
        ["status", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_withdrawals_user_id_id", "withdrawals", ["user_id", "id"], unique=False)


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_withdrawals_user_id_id", table_name="withdrawals")
    op.drop_index(
        "ix_withdrawals_status_next_attempt_at",
        table_name="withdrawals",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("withdrawals")
    op.drop_index("ix_payouts_user_id_created", table_name="payouts")
    op.drop_table("payouts")
