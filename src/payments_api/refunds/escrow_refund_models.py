"""Refunds of completed jobs paid from the wallet (kept beside the pay-in refunds, not in
their table: a wallet-funded escrow has no order, and no Stripe object is involved)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin


class EscrowRefund(TimestampMixin, Base):
    """An admin refund of (part of) a completed escrow that the customer paid from the
    wallet: the settlement is reversed in proportion (the payee's take and the platform's
    fees) straight back into the customer's available balance, in one transaction, with
    no Stripe call (no card was charged). Final when written."""

    __tablename__ = "escrow_refunds"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "payee_share >= 0 AND fee_share >= 0 AND platform_covered >= 0"
            " AND platform_covered <= payee_share AND payee_share + fee_share = amount",
            name="split",
        ),
        sa.UniqueConstraint("requested_by", "idempotency_key"),
        sa.Index("ix_escrow_refunds_escrow_id", "escrow_id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    escrow_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("escrows.id"))
    user_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    """The customer who paid the escrow (whose available balance gets the money)."""
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    payee_share: Mapped[int] = mapped_column(sa.BigInteger)
    """Taken back from the payee's take (cumulative largest remainder over the escrow's
    refunds, like a card-paid escrow's)."""
    fee_share: Mapped[int] = mapped_column(sa.BigInteger)
    """Taken back from the platform's fees (platform fee and service fee)."""
    platform_covered: Mapped[int] = mapped_column(sa.BigInteger)
    """The part of ``payee_share`` the payee no longer held (withdrawn): borne by the
    platform (``adjustments``)."""
    reason: Mapped[str] = mapped_column(sa.String(32))
    note: Mapped[str | None] = mapped_column(sa.Text)
    requested_by: Mapped[str] = mapped_column(sa.String(255))
    idempotency_key: Mapped[str] = mapped_column(sa.String(255))
    request_fingerprint: Mapped[str] = mapped_column(sa.String(64))
