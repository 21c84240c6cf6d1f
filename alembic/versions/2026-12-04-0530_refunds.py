"""refunds of direct payments: the split of each refund and what was refunded

Revision ID: 0015_refunds
Revises: 0014_events
Create Date: 2026-12-04 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_refunds"
down_revision: str | None = "0014_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for name in ("payee_share", "fee_share", "platform_covered"):
        op.add_column(
            "refunds",
            sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        )
    op.add_column("refunds", sa.Column("payee_coverable", sa.BigInteger(), nullable=True))
    op.create_check_constraint(
        op.f("refunds_direct_split_check"),
        "refunds",
        "payee_share >= 0 AND fee_share >= 0 AND platform_covered >= 0"
        " AND platform_covered <= payee_share"
        " AND (payee_share + fee_share = 0 OR payee_share + fee_share = amount)",
    )
    for name in ("refunded_amount", "refunded_fee_amount"):
        op.add_column(
            "direct_payments",
            sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        )
    op.create_check_constraint(
        op.f("direct_payments_refunded_check"),
        "direct_payments",
        "refunded_amount >= 0 AND refunded_amount <= amount"
        " AND refunded_fee_amount >= 0 AND refunded_fee_amount <= application_fee_amount"
        " AND refunded_fee_amount <= refunded_amount",
    )
    op.create_index("ix_direct_payments_payee_id", "direct_payments", ["payee_id"])


def downgrade() -> None:
    op.drop_index("ix_direct_payments_payee_id", table_name="direct_payments")
    op.drop_constraint(op.f("direct_payments_refunded_check"), "direct_payments", type_="check")
    op.drop_column("direct_payments", "refunded_fee_amount")
    op.drop_column("direct_payments", "refunded_amount")
    op.drop_constraint(op.f("refunds_direct_split_check"), "refunds", type_="check")
    for name in ("payee_coverable", "platform_covered", "fee_share", "payee_share"):
        op.drop_column("refunds", name)
