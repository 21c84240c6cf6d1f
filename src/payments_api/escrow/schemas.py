from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from payments_api.escrow.models import CaptureMethod, CaptureStatus, EscrowFunding, EscrowStatus
from payments_api.money import Currency, MinorAmount


class EscrowCreate(BaseModel):
    """A customer offers a job at price `amount` to a payee.

    `amount` plus the platform fee is moved from the customer's available balance in
    `currency` into escrow at once; the balance must cover both.
    """

    payee_id: str = Field(
        min_length=1,
        max_length=255,
        description="The payee's user id (JWT `sub`); the user must hold the payee role.",
        examples=["user_payee_42"],
    )
    amount: MinorAmount = Field(
        description="The job price P in minor units. At least the minimum job price of the "
        "currency: `PAYMENTS_ESCROW_MIN_MAJOR` of the major unit (1.00 usd, 1 jpy, 1.000 kwd "
        "by default), raised where needed so that each fee takes at least one minor unit "
        "(11 jpy with the default 5% and 20%); below it 422 `escrow_amount_too_small` with "
        "`minimum`.",
        examples=[10_000],
    )
    currency: Currency
    reference: str = Field(
        min_length=1,
        max_length=255,
        description="Your reference for the job (shown to the payee in earnings).",
        examples=["job-2026-0142"],
    )
    project_id: str | None = Field(
        None, max_length=255, description="The payee's project this job belongs to."
    )
    session_id: str | None = Field(
        None, max_length=255, description="The earning session this job belongs to."
    )
    description: str | None = Field(None, max_length=1000, examples=["Logo design, 3 drafts"])


class EscrowAccept(BaseModel):
    """Optional details of an acceptance."""

    amount_to_capture: MinorAmount | None = Field(
        None,
        description="An escrow paid by authorization (`capture_method: manual`) only: how "
        "much of the authorization to capture, at most `authorized_amount` (default: all "
        "of it). The rest is released at the card; the escrow's price and fees become "
        "those of what was captured. On any other escrow: 409 `escrow_capture_unavailable`.",
        examples=[8_400],
    )


class EscrowCancel(BaseModel):
    """Optional details of a cancellation."""

    reason: str | None = Field(None, max_length=500, examples=["Customer changed plans"])
    expected_status: Literal["awaiting_payment", "created", "accepted"] | None = Field(
        None,
        description="The status the caller saw. When set and the escrow has moved on (e.g. "
        "the payee accepted meanwhile), the cancel is refused with 409 "
        "`escrow_invalid_transition` instead of applying to the new status.",
        examples=["created"],
    )
    refund_to: Literal["wallet", "card"] = Field(
        "wallet",
        description="Where the money goes back: `wallet` (the customer's available "
        "balance) or `card` (an escrow paid by card and cancelled before acceptance: the "
        "card payment is refunded through Stripe; the money is held from the wallet until "
        "Stripe confirms, and stays there if Stripe refuses). `card` on an escrow paid "
        "from the wallet, or accepted, is 409 `refund_to_card_unavailable`.",
    )


class EscrowRead(BaseModel):
    """An escrow as one of its parties sees it.

    Both parties see the job price `amount`. The customer (and admins) see what they
    pay on top (`platform_fee_amount`, `hold_amount`); the payee (and admins) see what
    is withheld from the price and their take (`service_fee_amount`, `payee_amount`).
    Fields the caller may not see are null.
    """

    object: Literal["escrow"] = Field("escrow", description="Always `escrow`.")
    id: str = Field(description="Escrow id.", examples=["esc_12"])
    status: EscrowStatus = Field(
        description="awaiting_payment (card, not yet confirmed) -> created -> accepted -> "
        "completed; created/accepted -> cancelled. Paid by authorization: "
        "awaiting_payment -> authorized (the card holds the money) -> accepted once the "
        "capture is confirmed; authorized -> cancelled (released, or expired at Stripe)."
    )
    funding: EscrowFunding = Field(description="How the escrow was paid: wallet or card.")
    capture_method: CaptureMethod = Field(
        CaptureMethod.automatic,
        description="Card funding: `automatic` (charged at once) or `manual` (authorized "
        "only, captured when the payee accepts).",
    )
    capture_status: CaptureStatus | None = Field(
        None,
        description="`manual` only: the authorization's state (authorized, "
        "capture_requested, capture_failed, captured, release_requested, released, expired).",
    )
    authorized_amount: int | None = Field(
        None,
        description="Customer's view, `manual` only: what the card holds. Never available "
        "money and never in the ledger; only what is captured is.",
        examples=[10_500],
    )
    customer_id: str
    payee_id: str
    amount: int = Field(description="The job price P in minor units.", examples=[10_000])
    currency: str = Field(examples=["usd"])
    platform_fee_bps: int | None = Field(
        None, description="Customer's view: platform fee rate captured at creation."
    )
    platform_fee_amount: int | None = Field(
        None, description="Customer's view: platform fee on top of P.", examples=[500]
    )
    hold_amount: int | None = Field(
        None, description="Customer's view: P plus the platform fee.", examples=[10_500]
    )
    service_fee_bps: int | None = Field(
        None, description="Payee's view: service fee rate captured at creation."
    )
    service_fee_amount: int | None = Field(
        None, description="Payee's view: withheld from P on completion.", examples=[2_000]
    )
    payee_amount: int | None = Field(
        None, description="Payee's view: credited on completion.", examples=[8_000]
    )
    keeps_platform_fee_on_cancel: bool = Field(
        description="Whether cancelling after acceptance keeps the platform fee."
    )
    reference: str
    project_id: str | None
    session_id: str | None
    description: str | None
    cancel_reason: str | None
    created_at: datetime
    funded_at: datetime | None = Field(description="When the money arrived in escrow.")
    accepted_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None


class EscrowList(BaseModel):
    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[EscrowRead]
    has_more: bool = Field(description="More escrows exist after the last one returned.")


class EscrowCardRefund(BaseModel):
    """The refund of the card payment of a cancelled escrow (`refund_to: card`)."""

    id: str = Field(examples=["rfd_3"])
    amount: int = Field(description="Minor units.", examples=[10_500])
    currency: str = Field(examples=["usd"])
    status: Literal["pending", "requires_action", "succeeded", "failed", "canceled"] = Field(
        description="Stripe's status as last confirmed; `failed`: the money stayed in the wallet."
    )


class EscrowCancelRead(EscrowRead):
    refund: EscrowCardRefund | None = Field(
        None, description="With `refund_to: card`: the card refund; null otherwise."
    )
