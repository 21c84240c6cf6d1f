from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin

OPEN_STATUSES = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")
CLOSED_STATUSES = ("warning_closed", "won", "lost", "prevented")
DISPUTE_STATUSES = OPEN_STATUSES + CLOSED_STATUSES


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Dispute(TimestampMixin, Base):
    """A card dispute (chargeback or inquiry) on one of the platform's charges, as Stripe
    reports it, with what it moved in the ledger."""

    __tablename__ = "disputes"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_in(DISPUTE_STATUSES)})", name="status"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.UniqueConstraint("stripe_dispute_id"),
        sa.Index("ix_disputes_user_id_status", "user_id", "status"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    stripe_dispute_id: Mapped[str] = mapped_column(sa.String(255))
    stripe_charge_id: Mapped[str | None] = mapped_column(sa.String(255))
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(sa.String(255))
    order_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("orders.id"))
    """The disputed pay-in; NULL when the charge is not one of our orders."""
    stripe_invoice_id: Mapped[str | None] = mapped_column(sa.String(255))
    """The subscription invoice the disputed charge paid, when it paid one of ours."""
    user_id: Mapped[str | None] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    """The disputed amount, in the charge's currency."""
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(32))
    """Stripe's dispute status, as last applied (transitions are validated)."""
    reason: Mapped[str | None] = mapped_column(sa.String(64))
    withdrawn_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """What Stripe withdrew from the platform: disputed amount plus dispute fee."""
    fee_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Stripe's dispute fee, part of ``withdrawn_amount``."""
    user_debited_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """What was taken from the customer's available (may have driven it negative)."""
    reinstated_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """What Stripe gave back to the platform when the dispute was won."""
    platform_loss_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Set when lost: the part of the withdrawn money the customer's wallet did not cover."""
    froze_wallet: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"))
    """This dispute froze the customer's wallet (unfrozen when nothing else holds it)."""
    last_event_created: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Unix time of the newest Stripe event applied: an older event never overwrites it."""
    funds_withdrawn_at: Mapped[datetime | None]
    funds_reinstated_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
