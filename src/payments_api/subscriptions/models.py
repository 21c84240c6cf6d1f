"""Plans mirrored from Stripe, subscriptions and their invoices.

Stripe is the source of truth for all of them: rows are written from Stripe's objects
(a sync, a webhook, or the response to our own call) and carry ``stripe_state_at``, the
Unix time of the Stripe state they hold, so an older event never overwrites a newer
state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin
from payments_api.subscriptions.schemas import SubscriptionStatus

# Stripe's subscription statuses: the API's Literal is the one list.
SUBSCRIPTION_STATUSES: tuple[str, ...] = get_args(SubscriptionStatus)


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class PlanProduct(TimestampMixin, Base):
    """A Stripe Product that has recurring prices (a plan family's name and features)."""

    __tablename__ = "plan_products"

    stripe_product_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(500))
    description: Mapped[str | None] = mapped_column(sa.Text)
    active: Mapped[bool] = mapped_column(sa.Boolean)
    features: Mapped[list[str]] = mapped_column(JSONB, server_default=sa.text("'[]'::jsonb"))
    """``marketing_features[].name`` of the product."""
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=sa.text("'{}'::jsonb")
    )
    family: Mapped[str] = mapped_column(sa.String(255))
    """``metadata.family`` of the product, else its id: one subscription per family."""
    stripe_state_at: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())


class PlanPrice(TimestampMixin, Base):
    """A Stripe recurring Price. Archived prices (``active`` false) stay for the
    subscribers who have them."""

    __tablename__ = "plan_prices"
    __table_args__ = (
        sa.CheckConstraint("unit_amount >= 0", name="unit_amount_not_negative"),
        sa.CheckConstraint("monthly_credit > 0", name="monthly_credit_positive"),
        sa.Index("ix_plan_prices_stripe_product_id", "stripe_product_id"),
    )

    stripe_price_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    stripe_product_id: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(sa.Boolean)
    unit_amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    interval: Mapped[str] = mapped_column(sa.String(8))
    interval_count: Mapped[int] = mapped_column(sa.Integer)
    trial_period_days: Mapped[int | None] = mapped_column(sa.Integer)
    lookup_key: Mapped[str | None] = mapped_column(sa.String(255))
    nickname: Mapped[str | None] = mapped_column(sa.String(255))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=sa.text("'{}'::jsonb")
    )
    monthly_credit: Mapped[int | None] = mapped_column(sa.BigInteger)
    """``metadata.monthly_credit`` (minor units of ``currency``): credited to the
    subscriber's wallet once per paid invoice."""
    stripe_state_at: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())


class Subscription(TimestampMixin, Base):
    """A user's subscription to one recurring price, mirrored from Stripe."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_in(SUBSCRIPTION_STATUSES)})", name="status"),
        sa.UniqueConstraint("user_id", "idempotency_key"),
        sa.CheckConstraint("origin IN ('api', 'stripe')", name="origin"),
        sa.UniqueConstraint("stripe_subscription_id"),
        sa.Index("ix_subscriptions_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    stripe_price_id: Mapped[str] = mapped_column(sa.String(255))
    family: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(24), server_default=sa.text("'incomplete'"))
    idempotency_key: Mapped[str] = mapped_column(sa.String(255))
    request_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    stripe_subscription_id: Mapped[str | None] = mapped_column(sa.String(255))
    stripe_item_id: Mapped[str | None] = mapped_column(sa.String(255))
    """The subscription item holding the price (changed on a plan change)."""
    payment_method: Mapped[str | None] = mapped_column(sa.String(255))
    """A ``pm_…`` the subscriber chose at creation, else the customer's default."""
    cancel_at_period_end: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    trial_end: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    past_due_since: Mapped[datetime | None]
    """When it last became ``past_due`` (the grace period counts from here)."""
    latest_invoice_id: Mapped[str | None] = mapped_column(sa.String(255))
    origin: Mapped[str] = mapped_column(sa.String(8), server_default=sa.text("'api'"))
    """``api`` (subscribed through this service) or ``stripe`` (made elsewhere, e.g. the
    dashboard, for a customer we know, and adopted from its events)."""
    pause_behavior: Mapped[str | None] = mapped_column(sa.String(24))
    """Stripe's ``pause_collection.behavior`` while collection is paused, else NULL."""
    pause_resumes_at: Mapped[datetime | None]
    """Stripe's ``pause_collection.resumes_at``, when the pause ends by itself."""
    stripe_state_at: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Unix time of the Stripe state held (event ``created``, or our call's time)."""
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())


class SubscriptionInvoice(TimestampMixin, Base):
    """A Stripe invoice of a subscription, as its events reported it."""

    __tablename__ = "subscription_invoices"
    __table_args__ = (
        sa.UniqueConstraint("stripe_invoice_id"),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount_paid", name="refunded_amount"
        ),
        sa.CheckConstraint(
            "credit_reversed >= 0 AND credit_reversed <= coalesce(credited_amount, 0)",
            name="credit_reversed",
        ),
        sa.Index("ix_subscription_invoices_subscription_id", "subscription_id"),
        sa.Index("ix_subscription_invoices_stripe_payment_intent_id", "stripe_payment_intent_id"),
        sa.Index("ix_subscription_invoices_stripe_charge_id", "stripe_charge_id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    stripe_invoice_id: Mapped[str] = mapped_column(sa.String(255))
    subscription_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("subscriptions.id"))
    user_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(sa.String(24))
    billing_reason: Mapped[str | None] = mapped_column(sa.String(48))
    amount_due: Mapped[int] = mapped_column(sa.BigInteger)
    amount_paid: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    attempt_count: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    hosted_invoice_url: Mapped[str | None] = mapped_column(sa.Text)
    paid_at: Mapped[datetime | None]
    processing_fee_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    credited_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    """The plan's monthly credit given to the wallet for this invoice, once."""
    tax_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    """The tax in ``amount_paid`` (booked to ``tax_collected``); None before it was paid."""
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(sa.String(255))
    """The PaymentIntent that paid it (how reconciliation and refunds name the payment)."""
    stripe_charge_id: Mapped[str | None] = mapped_column(sa.String(255))
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Refunds that succeeded at Stripe (the ledger has reversed them)."""
    credit_reversed: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """The part of ``credited_amount`` taken back by those refunds."""
    stripe_state_at: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())


class UnclaimedSubscription(TimestampMixin, Base):
    """A subscription made at Stripe (the dashboard) for a Stripe customer we do not
    know: kept for an admin to review; it moves no money here."""

    __tablename__ = "unclaimed_subscriptions"

    stripe_subscription_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(24))
    stripe_price_id: Mapped[str | None] = mapped_column(sa.String(255))
    last_event_type: Mapped[str | None] = mapped_column(sa.String(64))
    stripe_state_at: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
