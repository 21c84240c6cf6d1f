from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin

WITHDRAWAL_STATUSES = ("pending", "transferred", "failed", "reversed")
PAYOUT_STATUSES = ("pending", "in_transit", "paid", "failed", "canceled")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Withdrawal(TimestampMixin, Base):
    """A payee's request to move available money to their connected account.

    pending: money held in ``withdrawing``, the Stripe Transfer not confirmed yet;
    transferred: the Transfer exists (money left the platform's Stripe balance);
    failed: Stripe refused it, money back in available; reversed: the Transfer was
    reversed later, money back in available.
    """

    __tablename__ = "withdrawals"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_in(WITHDRAWAL_STATUSES)})", name="status"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.UniqueConstraint("user_id", "idempotency_key"),
        sa.UniqueConstraint("stripe_transfer_id"),
        sa.Index("ix_withdrawals_user_id_id", "user_id", "id"),
        sa.Index(
            "ix_withdrawals_status_next_attempt_at",
            "status",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'pending'"))
    stripe_account_id: Mapped[str] = mapped_column(sa.String(255))
    """The destination connected account, fixed when the request was made."""
    stripe_transfer_id: Mapped[str | None] = mapped_column(sa.String(255))
    amount_reversed: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    failure_code: Mapped[str | None] = mapped_column(sa.String(64))
    idempotency_key: Mapped[str] = mapped_column(sa.String(255))
    request_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    """Transfer attempts made (all with the same Stripe idempotency key)."""
    next_attempt_at: Mapped[datetime | None]
    transferred_at: Mapped[datetime | None]
    expected_arrival_date: Mapped[date | None]
    """When the money should reach the payee's bank, estimated at the request from the
    connected account's payout schedule (NULL: manual payouts, no date to expect)."""
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())


class Payout(Base):
    """A Stripe payout of a connected account (bank transfer), as its events tell."""

    __tablename__ = "payouts"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_in(PAYOUT_STATUSES)})", name="status"),
        sa.UniqueConstraint("stripe_payout_id"),
        sa.Index("ix_payouts_user_id_created", "user_id", "created"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    stripe_payout_id: Mapped[str] = mapped_column(sa.String(255))
    stripe_account_id: Mapped[str] = mapped_column(sa.String(255))
    user_id: Mapped[str | None] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(16))
    failure_code: Mapped[str | None] = mapped_column(sa.String(64))
    arrival_date: Mapped[datetime | None]
    created: Mapped[datetime]
    """Stripe's creation time of the payout."""
    event_created: Mapped[datetime]
    """``created`` of the newest event applied: older events never overwrite."""
