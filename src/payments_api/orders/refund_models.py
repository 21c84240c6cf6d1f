from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin

REFUND_STATUSES = ("pending", "requires_action", "succeeded", "failed", "canceled")
REFUND_ORIGINS = ("admin", "stripe", "wallet")
WALLET_REFUND_STATUSES = ("pending", "succeeded", "partially_failed", "failed")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def stripe_refund_table_args(table: str) -> tuple[sa.Constraint | sa.Index, ...]:
    """The constraints and index of a table of :class:`StripeRefundColumns`."""
    return (
        sa.CheckConstraint(f"status IN ({_in(REFUND_STATUSES)})", name="status"),
        sa.CheckConstraint(f"origin IN ({_in(REFUND_ORIGINS)})", name="origin"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "(origin = 'admin') = (requested_by IS NOT NULL AND idempotency_key IS NOT NULL)",
            name="admin_request",
        ),
        sa.UniqueConstraint("requested_by", "idempotency_key"),
        sa.UniqueConstraint("stripe_refund_id"),
        sa.Index(
            f"ix_{table}_status_created_at",
            "status",
            "created_at",
            postgresql_where=sa.text("status IN ('pending', 'requires_action')"),
        ),
    )


class StripeRefundColumns:
    """What every refund of a card charge records, whatever it refunds (a pay-in, a
    subscription invoice): an admin's refund is written ``pending`` before Stripe is
    called, one made elsewhere (the Stripe dashboard) is recorded from Stripe's events.
    ``user_id`` is the customer who paid."""

    user_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'pending'"))
    """Stripe's refund status, as last applied (pending until Stripe says otherwise)."""
    origin: Mapped[str] = mapped_column(sa.String(8))
    """``admin`` (our API), ``stripe`` (made without us, e.g. in the dashboard) or
    ``wallet`` (one charge's part of a customer's wallet cash-out)."""
    reason: Mapped[str | None] = mapped_column(sa.String(32))
    """Stripe's reason code (duplicate, fraudulent, requested_by_customer, ...)."""
    note: Mapped[str | None] = mapped_column(sa.Text)
    """The admin's free-text note (also in the audit log)."""
    requested_by: Mapped[str | None] = mapped_column(sa.String(255))
    """The admin who asked for it; NULL for refunds made outside the API."""
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    stripe_refund_id: Mapped[str | None] = mapped_column(sa.String(255))
    failure_reason: Mapped[str | None] = mapped_column(sa.String(64))
    """Stripe's machine failure reason, or ``provider_rejected`` when Stripe refused it."""
    stripe_attempts: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    """Calls made to create the Stripe refund (retries reuse the same idempotency key)."""
    succeeded_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())


class Refund(StripeRefundColumns, TimestampMixin, Base):
    """A refund of (part of) a pay-in. Admin refunds are written ``pending`` before Stripe
    is called; refunds made elsewhere (the Stripe dashboard) are recorded from Stripe's
    events. The ledger moves only when Stripe reports the refund succeeded or failed.
    ``user_id`` is the customer who paid the order (and whose wallet a top-up refund
    debits)."""

    __tablename__ = "refunds"
    __table_args__ = (
        *stripe_refund_table_args("refunds"),
        # An order granting more credit than it cost may take back more than it refunds.
        sa.CheckConstraint("hold_amount >= 0", name="hold_amount"),
        sa.CheckConstraint(
            "payee_share >= 0 AND fee_share >= 0 AND platform_covered >= 0"
            " AND platform_covered <= payee_share"
            " AND (payee_share + fee_share = 0 OR payee_share + fee_share = amount)",
            name="direct_split",
        ),
        sa.CheckConstraint("credit_amount >= 0", name="credit_amount"),
        sa.Index("ix_refunds_order_id", "order_id"),
        sa.Index(
            "ix_refunds_wallet_refund_id",
            "wallet_refund_id",
            postgresql_where=sa.text("wallet_refund_id IS NOT NULL"),
        ),
        sa.CheckConstraint(
            "(origin = 'wallet') = (wallet_refund_id IS NOT NULL)", name="wallet_refund"
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("orders.id"))
    hold_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Moved available -> withdrawing when the refund was requested, so the customer cannot
    spend or withdraw money that is being refunded; settled or released by Stripe's word."""
    payee_share: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Direct payments: the part of the refund taken back from the payee's connected
    account (transfer reversal), set when the refund settles; 0 for other pay-ins."""
    fee_share: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Direct payments: the part of the refund taken back from the platform's
    application fee; ``payee_share + fee_share = amount`` once settled."""
    payee_coverable: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Direct payments: what the payee's connected account held (available + pending,
    in the refund's currency) just before Stripe was asked; NULL when not read."""
    platform_covered: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Direct payments: the part of ``payee_share`` the connected account could not
    cover, borne by the platform (booked to ``adjustments``)."""
    credit_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Orders that granted wallet credit: the part of the grant this refund takes back
    from the buyer's wallet (cumulative largest remainder over the order's refunds)."""
    forced: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    """An admin forced it although the buyer's available balance did not cover the
    credit to take back: the wallet went negative and was frozen."""
    wallet_refund_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("wallet_refunds.id")
    )
    """The cash-out this refund is a part of (origin ``wallet``): its hold sits in the
    customer's ``refunding`` account instead of ``withdrawing``."""


class WalletRefund(TimestampMixin, Base):
    """A customer's cash-out: unspent top-up money returned to the cards it came from.

    Split at creation over the customer's refundable top-ups, newest first, into one
    :class:`Refund` per charge (``wallet_refund_id``); the whole amount leaves
    ``available`` for ``refunding`` at once, and each part settles or comes back on
    Stripe's word. ``status`` follows the parts: ``pending`` while any is in flight, then
    ``succeeded`` (all refunded), ``failed`` (none) or ``partially_failed``."""

    __tablename__ = "wallet_refunds"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_in(WALLET_REFUND_STATUSES)})", name="status"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND failed_amount >= 0"
            " AND refunded_amount + failed_amount <= amount",
            name="settled_amounts",
        ),
        sa.UniqueConstraint("user_id", "idempotency_key"),
        sa.Index("ix_wallet_refunds_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'pending'"))
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """What Stripe confirmed refunded to the cards so far."""
    failed_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """What came back to ``available`` because its refund failed."""
    idempotency_key: Mapped[str] = mapped_column(sa.String(255))
    request_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    completed_at: Mapped[datetime | None]
    """When the last part became final (succeeded, failed or canceled)."""
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
