"""refunds, disputes and reconciliation

Revision ID: 0007_refunds_disputes
Revises: 0006_payout_accounts
Create Date: 2026-11-23 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_refunds_disputes"
down_revision: str | None = "0006_payout_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column(
            "stripe_transaction_count", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "ledger_transaction_count", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("matched_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("mismatch_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "undelivered_events",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'failed')",
            name=op.f("reconciliation_runs_status_check"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("reconciliation_runs_pkey")),
        sa.UniqueConstraint("run_date", name=op.f("reconciliation_runs_run_date_key")),
    )
    op.create_table(
        "reconciliation_mismatches",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("stripe_object_id", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("stripe_amount", sa.BigInteger(), nullable=True),
        sa.Column("ledger_amount", sa.BigInteger(), nullable=True),
        sa.Column(
            "balance_transaction_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "ledger_transaction_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('missing_in_ledger', 'missing_at_stripe', 'amount_differs')",
            name=op.f("reconciliation_mismatches_kind_check"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconciliation_runs.id"],
            name=op.f("reconciliation_mismatches_run_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("reconciliation_mismatches_pkey")),
    )
    op.create_index(
        "ix_reconciliation_mismatches_run_id", "reconciliation_mismatches", ["run_id"], unique=False
    )
    op.create_table(
        "reconciliation_snapshots",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("stripe_available", sa.BigInteger(), nullable=False),
        sa.Column("stripe_pending", sa.BigInteger(), nullable=False),
        sa.Column("ledger_balance", sa.BigInteger(), nullable=False),
        sa.Column("balance_difference", sa.BigInteger(), nullable=False),
        sa.Column("stripe_day_net", sa.BigInteger(), nullable=False),
        sa.Column("ledger_day_net", sa.BigInteger(), nullable=False),
        sa.Column("stripe_excluded_net", sa.BigInteger(), nullable=False),
        sa.Column("ledger_unattributed_net", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconciliation_runs.id"],
            name=op.f("reconciliation_snapshots_run_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("reconciliation_snapshots_pkey")),
        sa.UniqueConstraint(
            "run_id", "currency", name=op.f("reconciliation_snapshots_run_id_currency_key")
        ),
    )
    op.create_table(
        "disputes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("stripe_dispute_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_charge_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("withdrawn_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("fee_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "user_debited_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "reinstated_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("platform_loss_amount", sa.BigInteger(), nullable=True),
        sa.Column("froze_wallet", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("last_event_created", sa.BigInteger(), nullable=True),
        sa.Column("funds_withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("funds_reinstated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
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
            "status IN ('warning_needs_response', 'warning_under_review', 'needs_response', 'under_review', 'warning_closed', 'won', 'lost', 'prevented')",
            name=op.f("disputes_status_check"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("disputes_amount_positive_check")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("disputes_order_id_fkey")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("disputes_user_id_fkey")),
        sa.PrimaryKeyConstraint("id", name=op.f("disputes_pkey")),
        sa.UniqueConstraint("stripe_dispute_id", name=op.f("disputes_stripe_dispute_id_key")),
    )
    op.create_index("ix_disputes_user_id_status", "disputes", ["user_id", "status"], unique=False)
    op.create_table(
        "refunds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
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
        sa.Column("hold_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("stripe_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
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
            "(origin = 'admin') = (requested_by IS NOT NULL AND idempotency_key IS NOT NULL)",
            name=op.f("refunds_admin_request_check"),
        ),
        sa.CheckConstraint("origin IN ('admin', 'stripe')", name=op.f("refunds_origin_check")),
        sa.CheckConstraint(
            "status IN ('pending', 'requires_action', 'succeeded', 'failed', 'canceled')",
            name=op.f("refunds_status_check"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("refunds_amount_positive_check")),
        sa.CheckConstraint(
            "hold_amount >= 0 AND hold_amount <= amount", name=op.f("refunds_hold_amount_check")
        ),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("refunds_order_id_fkey")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("refunds_user_id_fkey")),
        sa.PrimaryKeyConstraint("id", name=op.f("refunds_pkey")),
        sa.UniqueConstraint(
            "requested_by", "idempotency_key", name=op.f("refunds_requested_by_idempotency_key_key")
        ),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("refunds_stripe_refund_id_key")),
    )
    op.create_index("ix_refunds_order_id", "refunds", ["order_id"], unique=False)
    op.create_index(
        "ix_refunds_status_created_at",
        "refunds",
        ["status", "created_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'requires_action')"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(
        "ix_refunds_status_created_at",
        table_name="refunds",
        postgresql_where=sa.text("status IN ('pending', 'requires_action')"),
    )
    op.drop_index("ix_refunds_order_id", table_name="refunds")
    op.drop_table("refunds")
    op.drop_index("ix_disputes_user_id_status", table_name="disputes")
    op.drop_table("disputes")
    op.drop_table("reconciliation_snapshots")
    op.drop_index("ix_reconciliation_mismatches_run_id", table_name="reconciliation_mismatches")
    op.drop_table("reconciliation_mismatches")
    op.drop_table("reconciliation_runs")
