"""projects, sessions and direct payments

Revision ID: 0010_projects
Revises: 0009_sandbox
Create Date: 2026-11-23 20:70:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_projects"
down_revision: str | None = "0009_sandbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "projects",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("owner_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'active'"), nullable=False
        ),
        _timestamp("updated_at"),
        _timestamp("created_at"),
        sa.CheckConstraint("status IN ('active', 'archived')", name=op.f("projects_status_check")),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("projects_currency_check")),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("projects_owner_id_fkey")),
        sa.PrimaryKeyConstraint("id", name=op.f("projects_pkey")),
    )
    op.create_index("ix_projects_owner_id_id", "projects", ["owner_id", "id"], unique=False)

    op.create_table(
        "project_sessions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=True),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'open'"), nullable=False),
        _timestamp("opened_at"),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        _timestamp("created_at"),
        sa.CheckConstraint(
            "status IN ('open', 'closed')", name=op.f("project_sessions_status_check")
        ),
        sa.CheckConstraint(
            "(status = 'open') = (closed_at IS NULL)",
            name=op.f("project_sessions_closed_at_check"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("project_sessions_project_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("project_sessions_pkey")),
    )
    op.create_index(
        "ix_project_sessions_project_id_id", "project_sessions", ["project_id", "id"], unique=False
    )
    op.create_index(
        "project_sessions_project_id_open_key",
        "project_sessions",
        ["project_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )

    op.create_table(
        "direct_payments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("payer_id", sa.String(length=255), nullable=False),
        sa.Column("payee_id", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("application_fee_amount", sa.BigInteger(), nullable=False),
        sa.Column("net_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("stripe_account_id", sa.String(length=255), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("kind IN ('tip', 'request')", name=op.f("direct_payments_kind_check")),
        sa.CheckConstraint("amount > 0", name=op.f("direct_payments_amount_positive_check")),
        sa.CheckConstraint(
            "application_fee_amount >= 0 AND application_fee_amount <= amount",
            name=op.f("direct_payments_application_fee_amount_check"),
        ),
        sa.CheckConstraint(
            "net_amount = amount - application_fee_amount",
            name=op.f("direct_payments_net_amount_check"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("direct_payments_order_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["payer_id"], ["users.id"], name=op.f("direct_payments_payer_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["payee_id"], ["users.id"], name=op.f("direct_payments_payee_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("direct_payments_project_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["project_sessions.id"],
            name=op.f("direct_payments_session_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("direct_payments_pkey")),
        sa.UniqueConstraint("order_id", name=op.f("direct_payments_order_id_key")),
        sa.UniqueConstraint(
            "stripe_payment_intent_id", name=op.f("direct_payments_stripe_payment_intent_id_key")
        ),
    )
    op.create_index(
        "ix_direct_payments_project_id_session_id",
        "direct_payments",
        ["project_id", "session_id"],
        unique=False,
    )
    op.create_index(
        "ix_direct_payments_session_id", "direct_payments", ["session_id"], unique=False
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_direct_payments_session_id", table_name="direct_payments")
    op.drop_index("ix_direct_payments_project_id_session_id", table_name="direct_payments")
    op.drop_table("direct_payments")
    op.drop_index(
        "project_sessions_project_id_open_key",
        table_name="project_sessions",
        postgresql_where=sa.text("status = 'open'"),
    )
    op.drop_index("ix_project_sessions_project_id_id", table_name="project_sessions")
    op.drop_table("project_sessions")
    op.drop_index("ix_projects_owner_id_id", table_name="projects")
    op.drop_table("projects")
