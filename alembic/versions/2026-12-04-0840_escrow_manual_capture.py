"""escrow: manual capture (card authorized on funding, captured on acceptance)

Revision ID: 0019_escrow_manual_capture
Revises: 0018_rollup_bucket_floor
Create Date: 2026-12-04 08:40:00

A card-funded escrow may be authorized only (``capture_method = 'manual'``): it waits in
the new status ``authorized`` while the card holds the money, and the authorization's
own state is ``capture_status``. Nothing about an authorization is in the ledger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_escrow_manual_capture"
down_revision: str | None = "0018_rollup_bucket_floor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "'awaiting_payment', 'created', 'accepted', 'completed', 'cancelled'"
NEW_STATUSES = "'awaiting_payment', 'authorized', 'created', 'accepted', 'completed', 'cancelled'"
CAPTURE_STATUSES = (
    "'authorized', 'capture_requested', 'capture_failed', 'captured', "
    "'release_requested', 'released', 'expired'"
)


def upgrade() -> None:
    op.add_column(
        "escrows",
        sa.Column(
            "capture_method",
            sa.String(length=9),
            server_default="automatic",
            nullable=False,
        ),
    )
    op.add_column("escrows", sa.Column("capture_status", sa.String(length=24), nullable=True))
    op.add_column("escrows", sa.Column("authorized_amount", sa.BigInteger(), nullable=True))
    op.add_column("escrows", sa.Column("capture_amount", sa.BigInteger(), nullable=True))
    op.add_column(
        "escrows",
        sa.Column("capture_round", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "escrows",
        sa.Column("capture_requested_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.drop_constraint(op.f("escrows_status_check"), "escrows", type_="check")
    op.create_check_constraint(
        op.f("escrows_status_check"), "escrows", f"status IN ({NEW_STATUSES})"
    )
    op.create_check_constraint(
        op.f("escrows_capture_method_check"),
        "escrows",
        "capture_method IN ('automatic', 'manual')",
    )
    op.create_check_constraint(
        op.f("escrows_capture_status_check"),
        "escrows",
        f"capture_status IS NULL OR capture_status IN ({CAPTURE_STATUSES})",
    )
    op.create_check_constraint(
        op.f("escrows_manual_capture_is_card_check"),
        "escrows",
        "capture_method = 'automatic' OR funding = 'card'",
    )
    op.create_check_constraint(
        op.f("escrows_authorized_is_manual_check"),
        "escrows",
        "status <> 'authorized' OR capture_method = 'manual'",
    )
    # The recovery sweep looks for captures and releases asked of Stripe and unanswered.
    op.create_index(
        "ix_escrows_capture_status_capture_requested_at",
        "escrows",
        ["capture_status", "capture_requested_at"],
        postgresql_where=sa.text("capture_status IN ('capture_requested', 'release_requested')"),
    )


def downgrade() -> None:
    op.drop_index("ix_escrows_capture_status_capture_requested_at", table_name="escrows")
    op.drop_constraint(op.f("escrows_authorized_is_manual_check"), "escrows", type_="check")
    op.drop_constraint(op.f("escrows_manual_capture_is_card_check"), "escrows", type_="check")
    op.drop_constraint(op.f("escrows_capture_status_check"), "escrows", type_="check")
    op.drop_constraint(op.f("escrows_capture_method_check"), "escrows", type_="check")
    op.drop_constraint(op.f("escrows_status_check"), "escrows", type_="check")
    op.execute("UPDATE escrows SET status = 'cancelled' WHERE status = 'authorized'")
    op.create_check_constraint(
        op.f("escrows_status_check"), "escrows", f"status IN ({OLD_STATUSES})"
    )
    for column in (
        "capture_requested_at",
        "capture_round",
        "capture_amount",
        "authorized_amount",
        "capture_status",
        "capture_method",
    ):
        op.drop_column("escrows", column)
