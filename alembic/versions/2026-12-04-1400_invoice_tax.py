"""tax on subscription invoices: the tax_collected kind, invoices keep their tax

Revision ID: 0026_invoice_tax
Revises: 0025_invoice_disputes
Create Date: 2026-12-04 14:00:00

A paid invoice's tax (Stripe's ``total_taxes``) is not revenue: it is posted to the
platform's ``tax_collected`` account, and refunds take it back in proportion, which
needs the invoice's tax (``subscription_invoices.tax_amount``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026_invoice_tax"
down_revision: str | None = "0025_invoice_disputes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_BEFORE = (
    "kind IN ('available', 'escrow', 'withdrawing', 'refunding', 'platform_fees', "
    "'stripe_balance', 'processing_fees', 'disputes', 'adjustments', 'sales', "
    "'authorized', 'card_authorizations')"
)
_KINDS_AFTER = (
    "kind IN ('available', 'escrow', 'withdrawing', 'refunding', 'platform_fees', "
    "'stripe_balance', 'processing_fees', 'disputes', 'adjustments', 'sales', "
    "'authorized', 'card_authorizations', 'tax_collected')"
)
_PLATFORM_BEFORE = (
    "(owner_user_id IS NULL) = (kind IN ('adjustments', 'card_authorizations', 'disputes', "
    "'platform_fees', 'processing_fees', 'sales', 'stripe_balance'))"
)
_PLATFORM_AFTER = (
    "(owner_user_id IS NULL) = (kind IN ('adjustments', 'card_authorizations', 'disputes', "
    "'platform_fees', 'processing_fees', 'sales', 'stripe_balance', 'tax_collected'))"
)


def _replace(name: str, condition: str) -> None:
    op.drop_constraint(op.f(name), "ledger_accounts", type_="check")
    op.create_check_constraint(op.f(name), "ledger_accounts", condition)


def upgrade() -> None:
    _replace("ledger_accounts_kind_check", _KINDS_AFTER)
    _replace("ledger_accounts_owner_matches_kind_check", _PLATFORM_AFTER)
    op.add_column("subscription_invoices", sa.Column("tax_amount", sa.BigInteger()))


def downgrade() -> None:
    # Once tax was posted the old constraints no longer hold and PostgreSQL refuses them,
    # rather than the ledger losing rows (postings are append-only).
    op.drop_column("subscription_invoices", "tax_amount")
    _replace("ledger_accounts_owner_matches_kind_check", _PLATFORM_BEFORE)
    _replace("ledger_accounts_kind_check", _KINDS_BEFORE)
