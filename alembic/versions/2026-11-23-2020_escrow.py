"""escrow and earnings

Revision ID: 0005_escrow
Revises: 0004_payins
Create Date: 2026-11-23 20:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_escrow"
down_revision: str | None = "0004_payins"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "escrows",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("payee_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("funding", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("platform_fee_bps", sa.Integer(), nullable=False),
        sa.Column("service_fee_bps", sa.Integer(), nullable=False),
        sa.Column("platform_fee_amount", sa.BigInteger(), nullable=False),
        sa.Column("service_fee_amount", sa.BigInteger(), nullable=False),
        sa.Column("payee_amount", sa.BigInteger(), nullable=False),
        sa.Column("hold_amount", sa.BigInteger(), nullable=False),
        sa.Column("keeps_platform_fee_on_cancel", sa.Boolean(), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=True),
        sa.Column("session_id", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("creation_key", sa.String(length=255), nullable=True),
        sa.Column("creation_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("funded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.String(length=255), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=255), nullable=True),
        sa.Column("cancel_reason", sa.String(length=500), nullable=True),
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
            "status IN ('awaiting_payment', 'created', 'accepted', 'completed', 'cancelled')",
            name=op.f("escrows_status_check"),
        ),
        sa.CheckConstraint("funding IN ('wallet', 'card')", name=op.f("escrows_funding_check")),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("escrows_currency_check")),
        sa.CheckConstraint("price_amount > 0", name=op.f("escrows_price_positive_check")),
        sa.CheckConstraint(
            "platform_fee_bps BETWEEN 0 AND 10000", name=op.f("escrows_platform_fee_bps_check")
        ),
        sa.CheckConstraint(
            "service_fee_bps BETWEEN 0 AND 10000", name=op.f("escrows_service_fee_bps_check")
        ),
        sa.CheckConstraint(
            "platform_fee_amount >= 0 AND service_fee_amount >= 0 AND payee_amount >= 0",
            name=op.f("escrows_parts_nonnegative_check"),
        ),
        sa.CheckConstraint(
            "hold_amount = price_amount + platform_fee_amount",
            name=op.f("escrows_hold_is_price_plus_fee_check"),
        ),
        sa.CheckConstraint(
            "payee_amount + service_fee_amount = price_amount",
            name=op.f("escrows_price_is_take_plus_fee_check"),
        ),
        sa.CheckConstraint("customer_id <> payee_id", name=op.f("escrows_not_self_check")),
        sa.CheckConstraint(
            "status <> 'awaiting_payment' OR funding = 'card'",
            name=op.f("escrows_awaiting_payment_is_card_check"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["users.id"], name=op.f("escrows_customer_id_fkey")
        ),
        sa.ForeignKeyConstraint(["payee_id"], ["users.id"], name=op.f("escrows_payee_id_fkey")),
        sa.PrimaryKeyConstraint("id", name=op.f("escrows_pkey")),
        sa.UniqueConstraint(
            "customer_id", "creation_key", name=op.f("escrows_customer_id_creation_key_key")
        ),
        sa.UniqueConstraint("payment_intent_id", name=op.f("escrows_payment_intent_id_key")),
    )
    op.create_index("ix_escrows_customer_id_id", "escrows", ["customer_id", "id"], unique=False)
    op.create_index("ix_escrows_payee_id_id", "escrows", ["payee_id", "id"], unique=False)
    op.create_table(
        "earnings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("payee_id", sa.String(length=255), nullable=False),
        sa.Column("source_type", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("escrow_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("project_id", sa.String(length=255), nullable=True),
        sa.Column("session_id", sa.String(length=255), nullable=True),
        sa.Column("earned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ledger_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "source_type IN ('escrow', 'payment')", name=op.f("earnings_source_type_check")
        ),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("earnings_currency_check")),
        sa.CheckConstraint("amount >= 0", name=op.f("earnings_amount_nonnegative_check")),
        sa.ForeignKeyConstraint(["payee_id"], ["users.id"], name=op.f("earnings_payee_id_fkey")),
        sa.ForeignKeyConstraint(
            ["escrow_id"], ["escrows.id"], name=op.f("earnings_escrow_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["ledger_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("earnings_ledger_transaction_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("earnings_pkey")),
        sa.UniqueConstraint(
            "source_type", "source_id", name=op.f("earnings_source_type_source_id_key")
        ),
    )
    op.create_index(
        "ix_earnings_payee_id_earned_at_id",
        "earnings",
        ["payee_id", "earned_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_earnings_payee_id_earned_at_id", table_name="earnings")
    op.drop_table("earnings")
    op.drop_index("ix_escrows_payee_id_id", table_name="escrows")
    op.drop_index("ix_escrows_customer_id_id", table_name="escrows")
    op.drop_table("escrows")
