"""orders.purpose no longer a closed list in the database

Revision ID: 0027_open_order_purposes
Revises: 0026_invoice_tax
Create Date: 2026-12-04 14:00:00

Pay-in purposes are plug-ins registered in ``payments_api/payins.py``: the application
refuses a purpose nothing registered (the API's schemas name the documented ones), so
adding a purpose is one module and one registration line, not a migration too.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027_open_order_purposes"
down_revision: str | None = "0026_invoice_tax"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("orders_purpose_check"), "orders", type_="check")


def downgrade() -> None:
    op.create_check_constraint(
        op.f("orders_purpose_check"),
        "orders",
        "purpose IN ('topup', 'order', 'escrow', 'direct')",
    )
