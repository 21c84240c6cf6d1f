"""Saved cards: only what a customer needs to recognise one (SPEC 9.3).

Never the number, the CVC or Stripe's whole PaymentMethod object: brand, last four
digits, expiry and Stripe's fingerprint (the same card saved twice has the same one).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin


class PaymentMethodSetup(TimestampMixin, Base):
    """One ``POST /me/payment-methods/setup``: the row the SetupIntent's outgoing key is
    derived from (``setup_intent:{id}``), found again by the client's Idempotency-Key."""

    __tablename__ = "payment_method_setups"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "idempotency_key"),
        sa.UniqueConstraint("stripe_setup_intent_id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    idempotency_key: Mapped[str] = mapped_column(sa.String(255))
    stripe_setup_intent_id: Mapped[str | None] = mapped_column(sa.String(255))


class PaymentMethod(TimestampMixin, Base):
    """A card saved for the user through a SetupIntent (``setup_intent.succeeded``)."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        sa.CheckConstraint("status IN ('active', 'detached')", name="status"),
        sa.CheckConstraint("exp_month BETWEEN 1 AND 12", name="exp_month"),
        sa.CheckConstraint("last4 ~ '^[0-9]{4}$'", name="last4_digits"),
        sa.CheckConstraint("NOT is_default OR status = 'active'", name="default_is_active"),
        sa.UniqueConstraint("stripe_payment_method_id"),
        # The same card (fingerprint) is saved once per user.
        sa.Index(
            "uq_payment_methods_user_fingerprint",
            "user_id",
            "fingerprint",
            unique=True,
            postgresql_where=sa.text("status = 'active'"),
        ),
        # At most one default per user.
        sa.Index(
            "uq_payment_methods_user_default",
            "user_id",
            unique=True,
            postgresql_where=sa.text("is_default"),
        ),
        sa.Index("ix_payment_methods_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    stripe_payment_method_id: Mapped[str] = mapped_column(sa.String(255))
    brand: Mapped[str] = mapped_column(sa.String(32))
    last4: Mapped[str] = mapped_column(sa.String(4))
    exp_month: Mapped[int] = mapped_column(sa.SmallInteger)
    exp_year: Mapped[int] = mapped_column(sa.SmallInteger)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'active'"))
    is_default: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    detached_at: Mapped[datetime | None]


class AutoReload(TimestampMixin, Base):
    """Top the wallet up off-session with the default card when available falls below
    ``threshold`` (per currency). ``below`` is the side of the threshold the balance was
    last seen on: only a move downwards starts a top-up, so one per crossing."""

    __tablename__ = "auto_reloads"
    __table_args__ = (
        sa.CheckConstraint("threshold > 0", name="threshold_positive"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
    )

    user_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("users.id"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    threshold: Mapped[int] = mapped_column(sa.BigInteger)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("true"))
    below: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
