from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin


class EscrowStatus(StrEnum):
    """The escrow's state machine (see docs/escrow.md)."""

    awaiting_payment = "awaiting_payment"
    """Card-funded only: created by checkout, waiting for Stripe to confirm the payment."""
    authorized = "authorized"
    """Card-funded with ``capture_method=manual`` only: the card holds the money (an
    authorization), nothing is captured and nothing is in the ledger yet. Accepting
    captures it; cancelling (or the authorization expiring at Stripe) releases it."""
    created = "created"
    """Money is held in the customer's escrow account; the payee has not accepted yet."""
    accepted = "accepted"
    completed = "completed"
    cancelled = "cancelled"


class EscrowFunding(StrEnum):
    wallet = "wallet"
    """Held from the customer's available balance when the escrow is created."""
    card = "card"
    """Paid by card through Stripe Checkout; lands in escrow on Stripe's confirmation."""


class CaptureMethod(StrEnum):
    automatic = "automatic"
    """The card payment is captured at once (the default)."""
    manual = "manual"
    """The card is only authorized; captured (fully or partly) when the payee accepts."""


class CaptureStatus(StrEnum):
    """Where a manual-capture escrow's card authorization stands (NULL otherwise)."""

    authorized = "authorized"
    """Stripe holds the money at the card (``requires_capture``)."""
    capture_requested = "capture_requested"
    """The payee accepted: the capture is being asked of Stripe (retried with its key)."""
    capture_failed = "capture_failed"
    """Stripe refused the capture; the authorization is untouched, accepting again retries."""
    captured = "captured"
    """Stripe captured (all or part of) it; the captured money is in the ledger."""
    release_requested = "release_requested"
    """The escrow was cancelled: the authorization is being cancelled at Stripe."""
    released = "released"
    """The authorization was cancelled at Stripe; the card was never charged."""
    expired = "expired"
    """Stripe cancelled the authorization itself (its capture window passed)."""


_STATUSES = ", ".join(f"'{s.value}'" for s in EscrowStatus)
_FUNDINGS = ", ".join(f"'{f.value}'" for f in EscrowFunding)
_CAPTURE_METHODS = ", ".join(f"'{c.value}'" for c in CaptureMethod)
_CAPTURE_STATUSES = ", ".join(f"'{c.value}'" for c in CaptureStatus)


class Escrow(TimestampMixin, Base):
    """A job offered by a customer to a payee, with its money held until settlement.

    The fee rates and the resulting amounts are fixed when the escrow is created, so a
    later configuration change never alters an open escrow.
    """

    __tablename__ = "escrows"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        sa.CheckConstraint(f"funding IN ({_FUNDINGS})", name="funding"),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency"),
        sa.CheckConstraint("price_amount > 0", name="price_positive"),
        sa.CheckConstraint("platform_fee_bps BETWEEN 0 AND 10000", name="platform_fee_bps"),
        sa.CheckConstraint("service_fee_bps BETWEEN 0 AND 10000", name="service_fee_bps"),
        sa.CheckConstraint(
            "platform_fee_amount >= 0 AND service_fee_amount >= 0 AND payee_amount >= 0",
            name="parts_nonnegative",
        ),
        # The split always sums exactly to what is held.
        sa.CheckConstraint(
            "hold_amount = price_amount + platform_fee_amount", name="hold_is_price_plus_fee"
        ),
        sa.CheckConstraint(
            "payee_amount + service_fee_amount = price_amount", name="price_is_take_plus_fee"
        ),
        sa.CheckConstraint("customer_id <> payee_id", name="not_self"),
        sa.CheckConstraint(
            "payee_reversed_amount >= 0 AND payee_reversed_amount <= payee_amount",
            name="payee_reversed_amount",
        ),
        sa.CheckConstraint(
            "status <> 'awaiting_payment' OR funding = 'card'", name="awaiting_payment_is_card"
        ),
        sa.CheckConstraint(f"capture_method IN ({_CAPTURE_METHODS})", name="capture_method"),
        sa.CheckConstraint(
            f"capture_status IS NULL OR capture_status IN ({_CAPTURE_STATUSES})",
            name="capture_status",
        ),
        sa.CheckConstraint(
            "capture_method = 'automatic' OR funding = 'card'", name="manual_capture_is_card"
        ),
        sa.CheckConstraint(
            "status <> 'authorized' OR capture_method = 'manual'", name="authorized_is_manual"
        ),
        sa.UniqueConstraint("customer_id", "creation_key"),
        sa.UniqueConstraint("payment_intent_id"),
        sa.Index("ix_escrows_customer_id_id", "customer_id", "id"),
        sa.Index("ix_escrows_payee_id_id", "payee_id", "id"),
        sa.Index(
            "ix_escrows_capture_status_capture_requested_at",
            "capture_status",
            "capture_requested_at",
            postgresql_where=sa.text(
                "capture_status IN ('capture_requested', 'release_requested')"
            ),
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    """Who offers the job and whose money is held."""
    payee_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("users.id"))
    """Who does the job and receives the take on completion."""
    status: Mapped[str] = mapped_column(sa.String(24))
    funding: Mapped[str] = mapped_column(sa.String(8))
    currency: Mapped[str] = mapped_column(sa.String(3))
    price_amount: Mapped[int] = mapped_column(sa.BigInteger)
    """The job price P offered to the payee, minor units."""
    platform_fee_bps: Mapped[int] = mapped_column(sa.Integer)
    """Platform fee rate charged to the customer on top of P, captured at creation."""
    service_fee_bps: Mapped[int] = mapped_column(sa.Integer)
    """Service fee rate withheld from P at completion, captured at creation."""
    platform_fee_amount: Mapped[int] = mapped_column(sa.BigInteger)
    """round_half_even(P * platform_fee_bps / 10000)."""
    service_fee_amount: Mapped[int] = mapped_column(sa.BigInteger)
    """round_half_even(P * service_fee_bps / 10000)."""
    payee_amount: Mapped[int] = mapped_column(sa.BigInteger)
    """The payee's take: P minus the service fee (it absorbs the rounding remainder)."""
    hold_amount: Mapped[int] = mapped_column(sa.BigInteger)
    """What the customer pays in: P plus the platform fee."""
    keeps_platform_fee_on_cancel: Mapped[bool] = mapped_column(sa.Boolean)
    """Cancel-after-accept policy captured at creation: keep (true) or refund the fee."""
    reference: Mapped[str] = mapped_column(sa.String(255))
    """The marketplace's job reference."""
    project_id: Mapped[str | None] = mapped_column(sa.String(255))
    session_id: Mapped[str | None] = mapped_column(sa.String(255))
    description: Mapped[str | None] = mapped_column(sa.Text)
    creation_key: Mapped[str | None] = mapped_column(sa.String(255))
    """The customer's Idempotency-Key of the create request (a retry finds this row)."""
    creation_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    """Hash of the create request body, to tell a retry from a different request."""
    payment_intent_id: Mapped[str | None] = mapped_column(sa.String(255))
    """Card funding: the Stripe PaymentIntent whose confirmation funded the escrow."""
    capture_method: Mapped[str] = mapped_column(sa.String(9), server_default="automatic")
    """Card funding: ``automatic`` (charged at once) or ``manual`` (authorized only)."""
    capture_status: Mapped[str | None] = mapped_column(sa.String(24))
    """Manual capture: the authorization's state (``CaptureStatus``); NULL otherwise."""
    authorized_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Manual capture: what the card holds for this escrow (a memo, never in the ledger:
    authorized money is nobody's balance until Stripe captures it)."""
    capture_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Manual capture: the ``amount_to_capture`` asked of Stripe on acceptance."""
    capture_round: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    """Manual capture: capture requests made (a new one only after Stripe refused the
    last); part of the Stripe idempotency key, so retries of one request share a key."""
    capture_requested_at: Mapped[datetime | None] = mapped_column()
    """When the last capture or release was asked for (the recovery job's clock)."""
    funded_at: Mapped[datetime | None] = mapped_column()
    accepted_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    completed_by: Mapped[str | None] = mapped_column(sa.String(255))
    cancelled_at: Mapped[datetime | None] = mapped_column()
    cancelled_by: Mapped[str | None] = mapped_column(sa.String(255))
    cancel_reason: Mapped[str | None] = mapped_column(sa.String(500))
    payee_reversed_amount: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    """Of ``payee_amount``, what refunds of the completed job took back from the payee
    (the payee's earnings entry shows it ``reversed``)."""
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
