from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin

# No closed list of purposes here: they are plug-ins (orders/purposes.py, wired in
# payins.py), and the application refuses one nothing registered.
ORDER_CHANNELS = ("checkout_session", "payment_intent", "wallet")
"""``wallet``: paid from the customer's available balance, no Stripe payment."""
OrderStatus = Literal[
    "pending",
    "requires_action",
    "succeeded",
    "failed",
    "expired",
    "refunded",
    "partially_refunded",
    "needs_review",
]
ORDER_STATUSES: tuple[str, ...] = get_args(OrderStatus)


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Price(TimestampMixin, Base):
    """A server-side priced catalog item: clients name it, never send its amount."""

    __tablename__ = "prices"
    __table_args__ = (
        sa.CheckConstraint("unit_amount > 0", name="unit_amount_positive"),
        sa.CheckConstraint("grants_credit IS NULL OR grants_credit > 0", name="grants_credit"),
        sa.UniqueConstraint("lookup_key"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    lookup_key: Mapped[str] = mapped_column(sa.String(64))
    """Stable public name of the item (e.g. ``pro-pack``)."""
    name: Mapped[str] = mapped_column(sa.String(200))
    unit_amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    active: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("true"))
    grants_credit: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Wallet credit (minor units, the price's currency) each unit bought gives the
    buyer when the order is paid; NULL: a plain sale."""


class DiscountCode(TimestampMixin, Base):
    """Percent or fixed amount off a catalog order, in a window, up to a usage limit."""

    __tablename__ = "discount_codes"
    __table_args__ = (
        sa.UniqueConstraint("code"),
        sa.CheckConstraint(
            "(percent_off_bps IS NULL) <> (amount_off IS NULL)", name="one_kind_of_discount"
        ),
        sa.CheckConstraint("percent_off_bps BETWEEN 1 AND 10000", name="percent_off_bps"),
        sa.CheckConstraint("amount_off > 0", name="amount_off_positive"),
        sa.CheckConstraint(
            "(amount_off IS NULL) = (currency IS NULL)", name="amount_off_has_currency"
        ),
        sa.CheckConstraint(
            "max_redemptions IS NULL OR redemptions <= max_redemptions", name="redemptions"
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64))
    percent_off_bps: Mapped[int | None] = mapped_column(sa.Integer)
    amount_off: Mapped[int | None] = mapped_column(sa.BigInteger)
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    max_redemptions: Mapped[int | None] = mapped_column(sa.Integer)
    redemptions: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    """Counted when an order using the code is created (the code is reserved)."""
    active: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("true"))


class Order(TimestampMixin, Base):
    """A pay-in: money a user pays through Stripe. Credited only on Stripe's word."""

    __tablename__ = "orders"
    __table_args__ = (
        sa.CheckConstraint(f"channel IN ({_in(ORDER_CHANNELS)})", name="channel"),
        sa.CheckConstraint(f"status IN ({_in(ORDER_STATUSES)})", name="status"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "granted_credit_amount >= 0 AND credit_taken_back_amount >= 0"
            " AND credit_taken_back_amount <= granted_credit_amount",
            name="granted_credit",
        ),
        sa.UniqueConstraint("user_id", "idempotency_key"),
        sa.UniqueConstraint("stripe_checkout_session_id"),
        sa.UniqueConstraint("stripe_payment_intent_id"),
        sa.Index("ix_orders_user_id_id", "user_id", "id"),
        sa.Index(
            "ix_orders_needs_review", "id", postgresql_where=sa.text("status = 'needs_review'")
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    purpose: Mapped[str] = mapped_column(sa.String(16))
    channel: Mapped[str] = mapped_column(sa.String(24))
    status: Mapped[str] = mapped_column(sa.String(24), server_default=sa.text("'pending'"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    """What the user pays, in minor units (after any discount)."""
    currency: Mapped[str] = mapped_column(sa.String(3))
    idempotency_key: Mapped[str] = mapped_column(sa.String(255))
    """The client's Idempotency-Key: a retried request finds this order again."""
    request_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    price_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("prices.id"))
    quantity: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("1"))
    discount_code_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("discount_codes.id")
    )
    discount_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(sa.String(255))
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(sa.String(255))
    checkout_url: Mapped[str | None] = mapped_column(sa.Text)
    expires_at: Mapped[datetime | None]
    failure_code: Mapped[str | None] = mapped_column(sa.String(64))
    """Machine reason of a failure or expiry (Stripe's decline code, never its text)."""
    review_reason: Mapped[str | None] = mapped_column(sa.String(64))
    """Why a paid order was not credited and waits for an operator (``needs_review``):
    Stripe reported a payment that differs from what was ordered."""
    paid_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    """What Stripe said was paid, when it differs from ``amount`` (review only)."""
    paid_currency: Mapped[str | None] = mapped_column(sa.String(3))
    processing_fee_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Stripe's fee from the charge's balance transaction, once known."""
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    reference: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sa.text("'{}'::jsonb"))
    """Links to what the payment is for (escrow id, payee, project, session)."""
    succeeded_at: Mapped[datetime | None]
    payment_method_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("payment_methods.id")
    )
    """The saved card confirmed server-side (a top-up with ``payment_method`` or
    ``off_session``)."""
    off_session: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    """Charged with the customer absent (``off_session=true`` at Stripe)."""
    action_url: Mapped[str | None] = mapped_column(sa.Text)
    """With ``requires_action``: where the customer finishes the payment on-session."""
    granted_credit_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Wallet credit the paid order gave the buyer (price ``grants_credit`` x quantity),
    fixed when the order is written."""
    credit_taken_back_amount: Mapped[int] = mapped_column(
        sa.BigInteger, server_default=sa.text("0")
    )
    """Of ``granted_credit_amount``, what refunds took back so far (largest remainder)."""
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
