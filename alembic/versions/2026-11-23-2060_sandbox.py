"""sandbox Stripe objects

Revision ID: 0009_sandbox
Revises: 0008_payouts
Create Date: 2026-11-23 20:60:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_sandbox"
down_revision: str | None = "0008_payouts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "sandbox_objects",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=True),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "private",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        _timestamp("updated_at"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("sandbox_objects_pkey")),
        sa.UniqueConstraint("seq", name=op.f("sandbox_objects_seq_key")),
    )
    op.create_index(
        "ix_sandbox_objects_type_account_seq",
        "sandbox_objects",
        ["type", "account", "seq"],
        unique=False,
    )
    op.create_table(
        "sandbox_idempotency_keys",
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("sandbox_idempotency_keys_pkey")),
    )
    op.create_table(
        "sandbox_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=True,
        ),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        _timestamp("created_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("sandbox_events_status_check"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("sandbox_events_pkey")),
        sa.UniqueConstraint("seq", name=op.f("sandbox_events_seq_key")),
    )
    op.create_index(
        "ix_sandbox_events_next_attempt_at",
        "sandbox_events",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(
        "ix_sandbox_events_next_attempt_at",
        table_name="sandbox_events",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("sandbox_events")
    op.drop_table("sandbox_idempotency_keys")
    op.drop_index("ix_sandbox_objects_type_account_seq", table_name="sandbox_objects")
    op.drop_table("sandbox_objects")
