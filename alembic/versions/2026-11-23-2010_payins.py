"""pay-ins: orders, prices, discounts, webhook inbox

Revision ID: 0004_payins
Revises: 0003_idempotency
Create Date: 2026-11-23 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_payins"
down_revision: str | None = "0003_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "discount_codes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("percent_off_bps", sa.Integer(), nullable=True),
        sa.Column("amount_off", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("redemptions", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(amount_off IS NULL) = (currency IS NULL)",
            name=op.f("discount_codes_amount_off_has_currency_check"),
        ),
        sa.CheckConstraint(
            "(percent_off_bps IS NULL) <> (amount_off IS NULL)",
            name=op.f("discount_codes_one_kind_of_discount_check"),
        ),
        sa.CheckConstraint("amount_off > 0", name=op.f("discount_codes_amount_off_positive_check")),
        sa.CheckConstraint(
            "max_redemptions IS NULL OR redemptions <= max_redemptions",
            name=op.f("discount_codes_redemptions_check"),
        ),
        sa.CheckConstraint(
            "percent_off_bps BETWEEN 1 AND 10000", name=op.f("discount_codes_percent_off_bps_check")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("discount_codes_pkey")),
        sa.UniqueConstraint("code", name=op.f("discount_codes_code_key")),
    )
    op.create_table(
        "prices",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("lookup_key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("unit_amount > 0", name=op.f("prices_unit_amount_positive_check")),
        sa.PrimaryKeyConstraint("id", name=op.f("prices_pkey")),
        sa.UniqueConstraint("lookup_key", name=op.f("prices_lookup_key_key")),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("endpoint", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("api_version", sa.String(length=64), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'received'"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "endpoint IN ('platform', 'connect')", name=op.f("webhook_events_endpoint_check")
        ),
        sa.CheckConstraint(
            "status IN ('received', 'processed', 'failed', 'ignored')",
            name=op.f("webhook_events_status_check"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("webhook_events_pkey")),
    )
    op.create_index(
        "ix_webhook_events_received_at", "webhook_events", ["received_at"], unique=False
    )
    op.create_index(
        "ix_webhook_events_status_next_attempt_at",
        "webhook_events",
        ["status", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'failed'"),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=24), nullable=False),
        sa.Column(
            "status", sa.String(length=24), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("price_id", sa.BigInteger(), nullable=True),
        sa.Column("quantity", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("discount_code_id", sa.BigInteger(), nullable=True),
        sa.Column("discount_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("stripe_checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("checkout_url", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("processing_fee_amount", sa.BigInteger(), nullable=True),
        sa.Column("refunded_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "reference",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("succeeded_at", sa.DateTime(timezone=True), nullable=True),
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
            "channel IN ('checkout_session', 'payment_intent')", name=op.f("orders_channel_check")
        ),
        sa.CheckConstraint(
            "purpose IN ('topup', 'order', 'escrow', 'direct')", name=op.f("orders_purpose_check")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'expired', 'refunded', 'partially_refunded')",
            name=op.f("orders_status_check"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("orders_amount_positive_check")),
        sa.ForeignKeyConstraint(
            ["discount_code_id"], ["discount_codes.id"], name=op.f("orders_discount_code_id_fkey")
        ),
        sa.ForeignKeyConstraint(["price_id"], ["prices.id"], name=op.f("orders_price_id_fkey")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("orders_user_id_fkey")),
        sa.PrimaryKeyConstraint("id", name=op.f("orders_pkey")),
        sa.UniqueConstraint(
            "stripe_checkout_session_id", name=op.f("orders_stripe_checkout_session_id_key")
        ),
        sa.UniqueConstraint(
            "stripe_payment_intent_id", name=op.f("orders_stripe_payment_intent_id_key")
        ),
        sa.UniqueConstraint(
            "user_id", "idempotency_key", name=op.f("orders_user_id_idempotency_key_key")
        ),
    )
    op.create_index("ix_orders_user_id_id", "orders", ["user_id", "id"], unique=False)


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_orders_user_id_id", table_name="orders")
    op.drop_table("orders")
    op.drop_index(
        "ix_webhook_events_status_next_attempt_at",
        table_name="webhook_events",
        postgresql_where=sa.text("status = 'failed'"),
    )
    op.drop_index("ix_webhook_events_received_at", table_name="webhook_events")
    op.drop_table("webhook_events")
    op.drop_table("prices")
    op.drop_table("discount_codes")
