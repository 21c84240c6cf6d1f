"""subscriptions: invoice payments and refunds, pause, adopted and unclaimed subscriptions

Revision ID: 0020_subscription_refunds
Revises: 0019_escrow_manual_capture
Create Date: 2026-12-04 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_subscription_refunds"
down_revision: str | None = "0019_escrow_manual_capture"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
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
    ]


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "subscriptions",
        sa.Column("origin", sa.String(length=8), server_default=sa.text("'api'"), nullable=False),
    )
    op.add_column("subscriptions", sa.Column("pause_behavior", sa.String(length=24)))
    op.add_column(
        "subscriptions", sa.Column("pause_resumes_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_check_constraint(
        op.f("subscriptions_origin_check"), "subscriptions", "origin IN ('api', 'stripe')"
    )
    op.add_column(
        "subscription_invoices", sa.Column("stripe_payment_intent_id", sa.String(length=255))
    )
    op.add_column("subscription_invoices", sa.Column("stripe_charge_id", sa.String(length=255)))
    op.add_column(
        "subscription_invoices",
        sa.Column("refunded_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "subscription_invoices",
        sa.Column("credit_reversed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_check_constraint(
        op.f("subscription_invoices_refunded_amount_check"),
        "subscription_invoices",
        "refunded_amount >= 0 AND refunded_amount <= amount_paid",
    )
    op.create_check_constraint(
        op.f("subscription_invoices_credit_reversed_check"),
        "subscription_invoices",
        "credit_reversed >= 0 AND credit_reversed <= coalesce(credited_amount, 0)",
    )
    op.create_index(
        "ix_subscription_invoices_stripe_payment_intent_id",
        "subscription_invoices",
        ["stripe_payment_intent_id"],
    )
    op.create_table(
        "unclaimed_subscriptions",
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("stripe_price_id", sa.String(length=255), nullable=True),
        sa.Column("last_event_type", sa.String(length=64), nullable=True),
        sa.Column("stripe_state_at", sa.BigInteger(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint(
            "stripe_subscription_id", name=op.f("unclaimed_subscriptions_pkey")
        ),
    )
    op.create_table(
        "invoice_refunds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("invoice_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("origin", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=255), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("forced", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("credit_share", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("credit_hold", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("stripe_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("succeeded_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "status IN ('pending', 'requires_action', 'succeeded', 'failed', 'canceled')",
            name=op.f("invoice_refunds_status_check"),
        ),
        sa.CheckConstraint(
            "origin IN ('admin', 'stripe')", name=op.f("invoice_refunds_origin_check")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("invoice_refunds_amount_positive_check")),
        sa.CheckConstraint("credit_share >= 0", name=op.f("invoice_refunds_credit_share_check")),
        sa.CheckConstraint(
            "credit_hold >= 0 AND credit_hold <= credit_share",
            name=op.f("invoice_refunds_credit_hold_check"),
        ),
        sa.CheckConstraint(
            "(origin = 'admin') = (requested_by IS NOT NULL AND idempotency_key IS NOT NULL)",
            name=op.f("invoice_refunds_admin_request_check"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["subscription_invoices.id"],
            name=op.f("invoice_refunds_invoice_id_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("invoice_refunds_user_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("invoice_refunds_pkey")),
        sa.UniqueConstraint(
            "requested_by",
            "idempotency_key",
            name=op.f("invoice_refunds_requested_by_idempotency_key_key"),
        ),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("invoice_refunds_stripe_refund_id_key")),
    )
    op.create_index("ix_invoice_refunds_invoice_id", "invoice_refunds", ["invoice_id"])
    op.create_index(
        "ix_invoice_refunds_status_created_at",
        "invoice_refunds",
        ["status", "created_at"],
        postgresql_where=sa.text("status IN ('pending', 'requires_action')"),
    )


def downgrade() -> None:
    op.drop_index("ix_invoice_refunds_status_created_at", table_name="invoice_refunds")
    op.drop_index("ix_invoice_refunds_invoice_id", table_name="invoice_refunds")
    op.drop_table("invoice_refunds")
    op.drop_table("unclaimed_subscriptions")
    op.drop_index(
        "ix_subscription_invoices_stripe_payment_intent_id", table_name="subscription_invoices"
    )
    op.drop_constraint(op.f("subscription_invoices_credit_reversed_check"), "subscription_invoices")
    op.drop_constraint(op.f("subscription_invoices_refunded_amount_check"), "subscription_invoices")
    for column in ("credit_reversed", "refunded_amount", "stripe_charge_id"):
        op.drop_column("subscription_invoices", column)
    op.drop_column("subscription_invoices", "stripe_payment_intent_id")
    op.drop_constraint(op.f("subscriptions_origin_check"), "subscriptions")
    for column in ("pause_resumes_at", "pause_behavior", "origin"):
        op.drop_column("subscriptions", column)
