"""Refunds of paid subscription invoices (kept beside the pay-in refunds, not in their
table: an invoice is not an order)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin
from payments_api.orders.refund_models import StripeRefundColumns, stripe_refund_table_args


class InvoiceRefund(StripeRefundColumns, TimestampMixin, Base):
    """A refund of (part of) the charge that paid a subscription invoice.

    Admin refunds are written ``pending`` (with the hold of the plan credit they take
    back) before Stripe is called; refunds made in the dashboard are recorded from
    Stripe's events. The ledger moves only on Stripe's word, as for pay-in refunds.
    ``user_id`` is the subscriber (whose wallet gives back the plan credit).
    """

    __tablename__ = "invoice_refunds"
    __table_args__ = (
        *stripe_refund_table_args("invoice_refunds"),
        sa.CheckConstraint("credit_share >= 0", name="credit_share"),
        sa.CheckConstraint("credit_hold >= 0 AND credit_hold <= credit_share", name="credit_hold"),
        sa.Index("ix_invoice_refunds_invoice_id", "invoice_id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("subscription_invoices.id")
    )
    forced: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    """Asked with ``force``: the credit share the wallet no longer holds is borne by the
    platform (``adjustments``) instead of refusing the refund."""
    credit_share: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """The part of the invoice's plan credit this refund takes back (cumulative largest
    remainder over the invoice's refunds); fixed when the refund settles."""
    credit_hold: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Moved available -> withdrawing when requested, so the credit being taken back
    cannot be spent meanwhile; settled or released on Stripe's word."""
