"""A payee's Stripe Connect Express account, as last seen from Stripe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin

PAYOUT_ACCOUNT_STATUSES = ("not_started", "pending", "enabled", "restricted")
_STATUSES = ", ".join(f"'{s}'" for s in PAYOUT_ACCOUNT_STATUSES)

_EMPTY_TEXT_ARRAY = sa.text("'{}'::text[]")


class PayoutAccount(TimestampMixin, Base):
    """One per user. The row is written before the Stripe account exists (to serialise
    concurrent first calls on it), so ``stripe_account_id`` is null only inside the
    transaction that creates the account."""

    __tablename__ = "payout_accounts"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        # not_started means "no Stripe account": the two never disagree.
        sa.CheckConstraint(
            "(stripe_account_id IS NULL) = (status = 'not_started')", name="account_status"
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("users.id", ondelete="RESTRICT"), unique=True
    )
    """The payee. Unique: one Express account per user."""
    stripe_account_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    """``acct_...``; unique so one Stripe account never backs two users."""
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'not_started'"))
    """Derived from Stripe's account (see docs/payout-accounts.md)."""
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    """Machine code explaining ``status`` (e.g. requirements_due, Stripe's disabled_reason)."""
    charges_enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    payouts_enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    details_submitted: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    disabled_reason: Mapped[str | None] = mapped_column(sa.Text)
    """Stripe's ``requirements.disabled_reason``, verbatim."""
    requirements_currently_due: Mapped[list[str]] = mapped_column(
        sa.ARRAY(sa.Text), server_default=_EMPTY_TEXT_ARRAY
    )
    requirements_past_due: Mapped[list[str]] = mapped_column(
        sa.ARRAY(sa.Text), server_default=_EMPTY_TEXT_ARRAY
    )
    requirements_pending_verification: Mapped[list[str]] = mapped_column(
        sa.ARRAY(sa.Text), server_default=_EMPTY_TEXT_ARRAY
    )
    payout_schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """Stripe's ``settings.payouts.schedule`` of the account (interval, delay_days,
    anchors): when a withdrawal is expected in the bank. NULL: never seen (the
    documented default ``payout_default_delay_days`` applies)."""
    stripe_state_at: Mapped[datetime | None] = mapped_column()
    """How new the stored Stripe state is: the ``created`` of the event it came from, or
    the moment an API read was sent. An event older than this is ignored."""
    last_event_id: Mapped[str | None] = mapped_column(sa.String(255))
    """The ``account.updated`` event the stored state came from, if any."""
    synced_at: Mapped[datetime | None] = mapped_column()
    """When Stripe's state was last stored (event or API). Null asks the next GET to sync."""
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
