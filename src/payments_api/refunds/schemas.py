from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from payments_api.money import Currency, MinorAmount

RefundReason = Literal["requested_by_customer", "duplicate", "fraudulent"]


class RefundCreate(BaseModel):
    """Refund all or part of a confirmed pay-in."""

    order_id: str = Field(max_length=32, description="The order to refund.", examples=["ord_12"])
    amount: MinorAmount | None = Field(
        None,
        description="Minor units to refund; omit to refund everything still refundable.",
    )
    currency: Currency | None = Field(
        None, description="Optional check: must be the order's currency when given."
    )
    reason: RefundReason = Field(
        "requested_by_customer", description="Stripe's refund reason code."
    )
    note: str | None = Field(
        None,
        max_length=500,
        description="Why (kept in the audit log, never sent to Stripe).",
        examples=["Customer cancelled within 14 days, ticket 4711"],
    )


class RefundRead(BaseModel):
    id: str = Field(examples=["rfd_3"])
    object: Literal["refund"] = "refund"
    order_id: str = Field(examples=["ord_12"])
    user_id: str = Field(description="The customer who paid the order.")
    amount: int = Field(description="Minor units.", examples=[500])
    currency: str = Field(examples=["usd"])
    status: Literal["pending", "requires_action", "succeeded", "failed", "canceled"] = Field(
        description="Stripe's status as last confirmed; the ledger moves on `succeeded` "
        "(and back on `failed`/`canceled`)."
    )
    origin: Literal["admin", "stripe", "wallet"] = Field(
        description="`admin`: made through this API; `stripe`: made elsewhere (e.g. the "
        "Stripe dashboard) and recorded from Stripe's events; `wallet`: one charge's part "
        "of a customer's wallet cash-out (`wallet_refund_id`)."
    )
    reason: str | None = None
    note: str | None = None
    requested_by: str | None = Field(None, description="The admin who asked for it.")
    held_amount: int = Field(
        description="Kept from the customer's available balance while Stripe processes it."
    )
    stripe_refund_id: str | None = Field(None, examples=["re_3MtwBw"])
    failure_reason: str | None = Field(
        None, description="Machine reason when failed (Stripe's code or provider_rejected)."
    )
    wallet_refund_id: str | None = Field(
        None,
        description="The wallet cash-out this refund is part of (origin `wallet`).",
        examples=["wrf_4"],
    )
    created_at: datetime
    succeeded_at: datetime | None = None


class RefundList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RefundRead]
    has_more: bool


WalletRefundStatus = Literal["pending", "succeeded", "partially_failed", "failed"]


class WalletRefundCreate(BaseModel):
    """Return unspent top-up money to the cards it came from."""

    amount: MinorAmount = Field(description="Minor units, within the currency's cash-out limits.")
    currency: Currency


class WalletRefundPart(BaseModel):
    """One Stripe Refund of one top-up charge."""

    refund_id: str = Field(description="The refund (see the admin refunds).", examples=["rfd_9"])
    topup_id: str = Field(description="The top-up order refunded.", examples=["ord_12"])
    amount: int
    status: Literal["pending", "requires_action", "succeeded", "failed", "canceled"]
    stripe_refund_id: str | None = Field(None, examples=["re_3MtwBw"])
    failure_reason: str | None = None


class WalletRefundRead(BaseModel):
    id: str = Field(examples=["wrf_4"])
    object: Literal["wallet_refund"] = "wallet_refund"
    user_id: str
    amount: int = Field(description="Minor units asked for.", examples=[2_500])
    currency: str = Field(examples=["usd"])
    status: WalletRefundStatus = Field(
        description="`pending` while a part is in flight; then `succeeded` (all on the "
        "cards), `failed` (none: everything back in available) or `partially_failed`."
    )
    refunded_amount: int = Field(description="Confirmed refunded to the cards by Stripe.")
    refunding_amount: int = Field(
        description="Held in the wallet's `refunding` balance until Stripe confirms."
    )
    failed_amount: int = Field(description="Back in `available` because its refund failed.")
    refunds: list[WalletRefundPart] = Field(
        description="One refund per top-up charge, newest charge first."
    )
    created_at: datetime
    completed_at: datetime | None = None


class WalletRefundList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WalletRefundRead]
    has_more: bool
