"""disputes on subscription invoices; invoices found by their charge

Revision ID: 0025_invoice_disputes
Revises: 0024_escrow_authorization
Create Date: 2026-12-04 13:20:00

- ``disputes.stripe_invoice_id``: the subscription invoice whose charge is disputed (a
  dispute names its charge and PaymentIntent, never the invoice);
- an index on ``subscription_invoices.stripe_charge_id``: a dispute naming only its
  charge finds the invoice by it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_invoice_disputes"
down_revision: str | None = "0024_escrow_authorization"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("disputes", sa.Column("stripe_invoice_id", sa.String(length=255)))
    op.create_index(
        "ix_subscription_invoices_stripe_charge_id",
        "subscription_invoices",
        ["stripe_charge_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_subscription_invoices_stripe_charge_id", table_name="subscription_invoices")
    op.drop_column("disputes", "stripe_invoice_id")
