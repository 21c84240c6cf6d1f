"""wallet cash-outs to card, the refunding ledger account, payout schedules

Revision ID: 0022_wallet_cashouts
Revises: 0021_wallet_spends
Create Date: 2026-12-04 09:00:00

- ``wallet_refunds``: a customer's cash-out of unspent top-up money, split into one
  ``refunds`` row per charge (``refunds.wallet_refund_id``, origin ``wallet``);
- the user account kind ``refunding`` (money on its way back to the customer's cards);
- ``payout_accounts.payout_schedule`` (Stripe's ``settings.payouts.schedule``) and
  ``withdrawals.expected_arrival_date`` estimated from it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022_wallet_cashouts"
down_revision: str | None = "0021_wallet_spends"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_BEFORE = (
    "kind IN ('available', 'escrow', 'withdrawing', 'platform_fees', 'stripe_balance', "
    "'processing_fees', 'disputes', 'adjustments', 'sales')"
)
_KINDS_AFTER = (
    "kind IN ('available', 'escrow', 'withdrawing', 'refunding', 'platform_fees', "
    "'stripe_balance', 'processing_fees', 'disputes', 'adjustments', 'sales')"
)


def upgrade() -> None:
    op.drop_constraint(op.f("ledger_accounts_kind_check"), "ledger_accounts", type_="check")
    op.create_check_constraint(op.f("ledger_accounts_kind_check"), "ledger_accounts", _KINDS_AFTER)

    op.create_table(
        "wallet_refunds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("refunded_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.CheckConstraint("amount > 0", name=op.f("wallet_refunds_amount_positive_check")),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND failed_amount >= 0"
            " AND refunded_amount + failed_amount <= amount",
            name=op.f("wallet_refunds_settled_amounts_check"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'partially_failed', 'failed')",
            name=op.f("wallet_refunds_status_check"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("wallet_refunds_user_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("wallet_refunds_pkey")),
        sa.UniqueConstraint(
            "user_id", "idempotency_key", name=op.f("wallet_refunds_user_id_idempotency_key_key")
        ),
    )
    op.create_index("ix_wallet_refunds_user_id_id", "wallet_refunds", ["user_id", "id"])

    op.add_column("refunds", sa.Column("wallet_refund_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("refunds_wallet_refund_id_fkey"),
        "refunds",
        "wallet_refunds",
        ["wallet_refund_id"],
        ["id"],
    )
    op.create_index(
        "ix_refunds_wallet_refund_id",
        "refunds",
        ["wallet_refund_id"],
        postgresql_where=sa.text("wallet_refund_id IS NOT NULL"),
    )
    op.drop_constraint(op.f("refunds_origin_check"), "refunds", type_="check")
    op.create_check_constraint(
        op.f("refunds_origin_check"), "refunds", "origin IN ('admin', 'stripe', 'wallet')"
    )
    op.create_check_constraint(
        op.f("refunds_wallet_refund_check"),
        "refunds",
        "(origin = 'wallet') = (wallet_refund_id IS NOT NULL)",
    )

    op.add_column(
        "payout_accounts",
        sa.Column("payout_schedule", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column("withdrawals", sa.Column("expected_arrival_date", sa.Date(), nullable=True))


def downgrade() -> None:
    op.drop_column("withdrawals", "expected_arrival_date")
    op.drop_column("payout_accounts", "payout_schedule")
    op.drop_constraint(op.f("refunds_wallet_refund_check"), "refunds", type_="check")
    op.drop_constraint(op.f("refunds_origin_check"), "refunds", type_="check")
    op.execute("DELETE FROM refunds WHERE origin = 'wallet'")
    op.create_check_constraint(
        op.f("refunds_origin_check"), "refunds", "origin IN ('admin', 'stripe')"
    )
    op.drop_index("ix_refunds_wallet_refund_id", table_name="refunds")
    op.drop_constraint(op.f("refunds_wallet_refund_id_fkey"), "refunds", type_="foreignkey")
    op.drop_column("refunds", "wallet_refund_id")
    op.drop_index("ix_wallet_refunds_user_id_id", table_name="wallet_refunds")
    op.drop_table("wallet_refunds")
    op.drop_constraint(op.f("ledger_accounts_kind_check"), "ledger_accounts", type_="check")
    op.create_check_constraint(op.f("ledger_accounts_kind_check"), "ledger_accounts", _KINDS_BEFORE)
