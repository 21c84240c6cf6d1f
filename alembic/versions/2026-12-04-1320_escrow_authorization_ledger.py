"""the ledger shows card authorizations: the authorized and card_authorizations kinds

Revision ID: 0024_escrow_authorization
Revises: 0023_money
Create Date: 2026-12-04 13:20:00

An escrow paid by authorization (manual capture) holds money at the customer's card
that is nobody's balance yet. It is now posted as a memo pair -- the customer's
``authorized`` account against the platform's ``card_authorizations`` -- and reversed
when the authorization is captured, released or expires (docs/ledger.md).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024_escrow_authorization"
down_revision: str | None = "0023_money"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_BEFORE = (
    "kind IN ('available', 'escrow', 'withdrawing', 'refunding', 'platform_fees', "
    "'stripe_balance', 'processing_fees', 'disputes', 'adjustments', 'sales')"
)
_KINDS_AFTER = (
    "kind IN ('available', 'escrow', 'withdrawing', 'refunding', 'platform_fees', "
    "'stripe_balance', 'processing_fees', 'disputes', 'adjustments', 'sales', "
    "'authorized', 'card_authorizations')"
)
_PLATFORM_BEFORE = (
    "(owner_user_id IS NULL) = (kind IN ('adjustments', 'disputes', 'platform_fees', "
    "'processing_fees', 'sales', 'stripe_balance'))"
)
_PLATFORM_AFTER = (
    "(owner_user_id IS NULL) = (kind IN ('adjustments', 'card_authorizations', 'disputes', "
    "'platform_fees', 'processing_fees', 'sales', 'stripe_balance'))"
)


def _replace(name: str, condition: str) -> None:
    op.drop_constraint(op.f(name), "ledger_accounts", type_="check")
    op.create_check_constraint(op.f(name), "ledger_accounts", condition)


def upgrade() -> None:
    _replace("ledger_accounts_kind_check", _KINDS_AFTER)
    _replace("ledger_accounts_owner_matches_kind_check", _PLATFORM_AFTER)


def downgrade() -> None:
    # Postings are append-only: once an authorization was posted the old constraints
    # no longer hold and PostgreSQL refuses them, rather than the ledger losing rows.
    _replace("ledger_accounts_owner_matches_kind_check", _PLATFORM_BEFORE)
    _replace("ledger_accounts_kind_check", _KINDS_BEFORE)
