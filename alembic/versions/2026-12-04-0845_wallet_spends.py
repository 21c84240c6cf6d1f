"""wallet spends: orders and direct payments paid from the wallet, prices that grant
wallet credit, refunds that take credit back or reverse an escrow's settlement

Revision ID: 0021_wallet_spends
Revises: 0020_subscription_refunds
Create Date: 2026-12-04 08:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_wallet_spends"
down_revision: str | None = "0020_subscription_refunds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("prices", sa.Column("grants_credit", sa.BigInteger(), nullable=True))
    op.create_check_constraint(
        op.f("prices_grants_credit_check"),
        "prices",
        "grants_credit IS NULL OR grants_credit > 0",
    )
    op.drop_constraint(op.f("orders_channel_check"), "orders", type_="check")
    op.create_check_constraint(
        op.f("orders_channel_check"),
        "orders",
        "channel IN ('checkout_session', 'payment_intent', 'wallet')",
    )
    for name in ("granted_credit_amount", "credit_taken_back_amount"):
        op.add_column(
            "orders",
            sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        )
    op.create_check_constraint(
        op.f("orders_granted_credit_check"),
        "orders",
        "granted_credit_amount >= 0 AND credit_taken_back_amount >= 0"
        " AND credit_taken_back_amount <= granted_credit_amount",
    )
    op.add_column(
        "refunds",
        sa.Column("credit_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "refunds",
        sa.Column("forced", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_check_constraint(op.f("refunds_credit_amount_check"), "refunds", "credit_amount >= 0")
    # The hold of an order's refund is the credit it takes back, which may exceed the
    # amount refunded when the order granted more credit than it cost.
    op.drop_constraint(op.f("refunds_hold_amount_check"), "refunds", type_="check")
    op.create_check_constraint(op.f("refunds_hold_amount_check"), "refunds", "hold_amount >= 0")
    op.add_column(
        "direct_payments",
        sa.Column("funding", sa.String(length=8), server_default=sa.text("'card'"), nullable=False),
    )
    op.alter_column("direct_payments", "stripe_payment_intent_id", nullable=True)
    op.create_check_constraint(
        op.f("direct_payments_funding_check"),
        "direct_payments",
        "(funding = 'card' AND stripe_payment_intent_id IS NOT NULL)"
        " OR (funding = 'wallet' AND stripe_payment_intent_id IS NULL)",
    )

    op.add_column(
        "escrows",
        sa.Column(
            "payee_reversed_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.create_check_constraint(
        op.f("escrows_payee_reversed_amount_check"),
        "escrows",
        "payee_reversed_amount >= 0 AND payee_reversed_amount <= payee_amount",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("escrows_payee_reversed_amount_check"), "escrows", type_="check")
    op.drop_column("escrows", "payee_reversed_amount")
    op.execute("DELETE FROM direct_payments WHERE funding = 'wallet'")
    op.drop_constraint(op.f("direct_payments_funding_check"), "direct_payments", type_="check")
    op.alter_column("direct_payments", "stripe_payment_intent_id", nullable=False)
    op.drop_column("direct_payments", "funding")
    op.drop_constraint(op.f("refunds_hold_amount_check"), "refunds", type_="check")
    op.create_check_constraint(
        op.f("refunds_hold_amount_check"), "refunds", "hold_amount >= 0 AND hold_amount <= amount"
    )
    op.drop_constraint(op.f("refunds_credit_amount_check"), "refunds", type_="check")
    op.drop_column("refunds", "forced")
    op.drop_column("refunds", "credit_amount")
    op.drop_constraint(op.f("orders_granted_credit_check"), "orders", type_="check")
    op.drop_column("orders", "credit_taken_back_amount")
    op.drop_column("orders", "granted_credit_amount")
    op.drop_constraint(op.f("orders_channel_check"), "orders", type_="check")
    op.create_check_constraint(
        op.f("orders_channel_check"),
        "orders",
        "channel IN ('checkout_session', 'payment_intent')",
    )
    op.drop_constraint(op.f("prices_grants_credit_check"), "prices", type_="check")
    op.drop_column("prices", "grants_credit")
