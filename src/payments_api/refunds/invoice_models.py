"""Refunds of paid subscription invoices (kept beside the pay-in refunds, not in their
table: an invoice is not an order)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin
from payments_api.orders.refund_models import REFUND_ORIGINS, REFUND_STATUSES


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class InvoiceRefund(TimestampMixin, Base):
    """A refund of (part of) the charge that paid a subscription invoice.

    Admin refunds are written ``pending`` (with the hold of the plan credit they take
    back) before Stripe is called; refunds made in the dashboard are recorded from
    Stripe's events. The ledger moves only on Stripe's word, as for pay-in refunds.
    """

    __tablename__ = "invoice_refunds"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_in(REFUND_STATUSES)})", name="status"),
        sa.CheckConstraint(f"origin IN ({_in(REFUND_ORIGINS)})", name="origin"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("credit_share >= 0", name="credit_share"),
        sa.CheckConstraint("credit_hold >= 0 AND credit_hold <= credit_share", name="credit_hold"),
        sa.CheckConstraint(
            "(origin = 'admin') = (requested_by IS NOT NULL AND idempotency_key IS NOT NULL)",
            name="admin_request",
        ),
        sa.UniqueConstraint("requested_by", "idempotency_key"),
        sa.UniqueConstraint("stripe_refund_id"),
        sa.Index("ix_invoice_refunds_invoice_id", "invoice_id"),
        sa.Index(
            "ix_invoice_refunds_status_created_at",
            "status",
            "created_at",
            postgresql_where=sa.text("status IN ('pending', 'requires_action')"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("subscription_invoices.id")
    )
    user_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    """The subscriber (whose wallet gives back the plan credit)."""
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'pending'"))
    origin: Mapped[str] = mapped_column(sa.String(8))
    reason: Mapped[str | None] = mapped_column(sa.String(32))
    note: Mapped[str | None] = mapped_column(sa.Text)
    requested_by: Mapped[str | None] = mapped_column(sa.String(255))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    forced: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    """Asked with ``force``: the credit share the wallet no longer holds is borne by the
    platform (``adjustments``) instead of refusing the refund."""
    credit_share: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """The part of the invoice's plan credit this refund takes back (cumulative largest
    remainder over the invoice's refunds); fixed when the refund settles."""
    credit_hold: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Moved available -> withdrawing when requested, so the credit being taken back
    cannot be spent meanwhile; settled or released on Stripe's word."""
    stripe_refund_id: Mapped[str | None] = mapped_column(sa.String(255))
    failure_reason: Mapped[str | None] = mapped_column(sa.String(64))
    stripe_attempts: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    succeeded_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
