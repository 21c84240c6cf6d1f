from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin


class EarningSource(StrEnum):
    escrow = "escrow"
    """A completed escrow (a job settled to the payee's available balance)."""
    payment = "payment"
    """A direct payment to the payee (tip, pay-per-request), recorded by that domain."""


_SOURCES = ", ".join(f"'{s.value}'" for s in EarningSource)


class Earning(TimestampMixin, Base):
    """One amount a payee earned: only their take, never the customer's price or fees.

    Written in the same database transaction as the ledger transaction that credited
    the payee, once per source (``source_type``, ``source_id``).
    """

    __tablename__ = "earnings"
    __table_args__ = (
        CheckConstraint(f"source_type IN ({_SOURCES})", name="source_type"),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        CheckConstraint("amount >= 0", name="amount_nonnegative"),
        UniqueConstraint("source_type", "source_id"),
        # Serves both the newest-first listing and the per-payee summary.
        Index("ix_earnings_payee_id_earned_at_id", "payee_id", "earned_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    payee_id: Mapped[str] = mapped_column(String(255), ForeignKey("users.id"))
    source_type: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(255))
    """Public id of the source: ``esc_12`` for an escrow, ``pi_...`` for a payment."""
    escrow_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("escrows.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    """The payee's take in minor units."""
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    session_id: Mapped[str | None] = mapped_column(String(255))
    earned_at: Mapped[datetime] = mapped_column()
    """When the take became the payee's (escrow completion, payment confirmation)."""
    ledger_transaction_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id")
    )
    """The ledger transaction that credited the payee, when it went through the ledger."""
