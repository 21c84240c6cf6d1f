from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from payments_api.kit.list_pages import ListPage
from payments_api.money import Currency, MinorAmount

RefundReason = Literal["requested_by_customer", "duplicate", "fraudulent"]


class RefundCreate(BaseModel):
    """Refund all or part of a confirmed pay-in, or of a paid subscription invoice."""

    order_id: str | None = Field(
        None, max_length=32, description="The order to refund.", examples=["ord_12"]
    )
    invoice_id: str | None = Field(
        None,
        max_length=255,
        description="Instead of `order_id`: a paid subscription invoice (its `id`, Stripe's "
        "`in_…`). The plan credit it granted is taken back in proportion.",
        examples=["in_1MtHbELkdIwHu7ix"],
    )
    escrow_id: str | None = Field(
        None,
        max_length=32,
        description="Instead of `order_id`: a completed job (`esc_…`). Paid by card, it is "
        "its funding order's refund; paid from the wallet, the settlement is reversed "
        "straight back into the customer's wallet (`rfe_…` ids, no Stripe call).",
        examples=["esc_7"],
    )
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
    force: bool = Field(
        False,
        description="Take the wallet credit back even when the wallet no longer covers it. "
        "Orders that granted credit (otherwise 409 `credit_already_spent`): the wallet may go "
        "negative and is then frozen. Subscription invoices (otherwise 409 "
        "`refund_credit_spent`): the platform bears the part the wallet no longer holds.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> RefundCreate:
        targets = (self.order_id, self.invoice_id, self.escrow_id)
        if sum(t is not None for t in targets) != 1:
            raise ValueError("Give exactly one of order_id, invoice_id and escrow_id.")
        return self


class RefundRead(BaseModel):
    id: str = Field(
        examples=["rfd_3"],
        description="`rfd_…` (orders), `rfi_…` (invoices) or `rfe_…` (jobs paid from the wallet).",
    )
    object: Literal["refund"] = "refund"
    order_id: str | None = Field(examples=["ord_12"], description="The refunded order.")
    invoice_id: str | None = Field(
        None, description="The refunded subscription invoice (instead of an order)."
    )
    escrow_id: str | None = Field(
        None,
        description="The refunded job when it was paid from the wallet (instead of an "
        "order; a job paid by card is refunded through its order).",
    )
    user_id: str = Field(description="The customer who paid the order or invoice.")
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
    credit_taken_back: int = Field(
        0,
        description="The wallet credit this refund takes back: for an order whose price "
        "granted credit, in proportion (largest remainder); for a subscription invoice, its "
        "share of the plan credit (held while in flight, final once succeeded).",
    )
    forced: bool = Field(
        False, description="Taken back with `force` although the wallet did not cover it."
    )
    payee_share: int = Field(
        0,
        description="Direct payments and completed escrows: what the payee gives back "
        "(the rest of `amount` comes out of the platform's fees).",
    )
    wallet_refund_id: str | None = Field(
        None,
        description="The wallet cash-out this refund is part of (origin `wallet`).",
        examples=["wrf_4"],
    )
    created_at: datetime
    succeeded_at: datetime | None = None


class RefundList(ListPage[RefundRead]):
    pass


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


class WalletRefundList(ListPage[WalletRefundRead]):
    pass
