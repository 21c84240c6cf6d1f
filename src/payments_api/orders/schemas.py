from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from payments_api.kit.list_page import ListPage
from payments_api.money import Currency, MinorAmount
from payments_api.orders.models import OrderStatus

Purpose = Literal["topup", "order", "escrow", "direct"]


class CheckoutSessionCreate(BaseModel):
    """Start a Stripe Checkout payment. Which fields apply depends on `purpose`."""

    purpose: Purpose = Field(
        description="topup: credit the wallet with `amount`; order: buy catalog item `price`; "
        "escrow: pay a job offer (`payee_id`, `amount`, `currency`, `reference`) by card, "
        "the money landing in escrow; direct: pay a payee directly."
    )
    amount: MinorAmount | None = Field(
        None, description="topup and direct: minor units, within the top-up limits."
    )
    currency: Currency | None = Field(
        None, description="topup and direct (a direct payment's must be the project's)."
    )
    price: str | None = Field(
        None,
        max_length=64,
        description="order only: the price's lookup key.",
        examples=["pro-pack"],
    )
    quantity: int = Field(1, ge=1, le=100, description="order only.")
    discount_code: str | None = Field(None, max_length=64, description="order only.")
    escrow_id: str | None = Field(
        None, max_length=64, description="Deprecated, ignored: escrow checkouts create the job."
    )
    reference: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="escrow only: your reference for the job.",
        examples=["job-2026-0142"],
    )
    description: str | None = Field(
        None, max_length=1000, description="escrow only: what the job is."
    )
    payee_id: str | None = Field(
        None, max_length=255, description="direct and escrow: the payee (user id)."
    )
    project_id: str | None = Field(
        None,
        max_length=64,
        description="direct only: the payee's project the payment is for.",
        examples=["prj_12"],
    )
    session_id: str | None = Field(
        None,
        max_length=64,
        description="direct only, optional: an open session of the project.",
        examples=["ses_40"],
    )
    kind: Literal["tip", "request"] | None = Field(
        None,
        description="direct only: tip (the default) or request (a paid request, counted "
        "in the session's `paid_request_count`).",
    )
    capture_method: Literal["automatic", "manual"] = Field(
        "automatic",
        description="escrow only: `automatic` charges the card at once; `manual` only "
        "authorizes it (the money is reserved at the card, never available nor in the "
        "ledger): the escrow becomes `authorized`, is captured (fully, or partly with "
        "`amount_to_capture`) when the payee accepts, and the authorization is released "
        "when the offer is cancelled or expires at Stripe (about 7 days for cards).",
    )
    success_url: str = Field(
        max_length=2048,
        description="Where Stripe sends the browser after paying. Its origin must be an "
        "allowed frontend origin. Reaching it is NOT a payment confirmation.",
        examples=["https://app.example.com/wallet?checkout=success"],
    )
    cancel_url: str = Field(max_length=2048, examples=["https://app.example.com/wallet"])

    @model_validator(mode="after")
    def _manual_capture_is_escrow(self) -> CheckoutSessionCreate:
        if self.capture_method != "automatic" and self.purpose != "escrow":
            raise ValueError("capture_method=manual applies to purpose=escrow only.")
        return self


class CheckoutSessionRead(BaseModel):
    id: str = Field(description="Stripe Checkout Session id.", examples=["cs_test_a1b2"])
    url: str | None = Field(description="Send the browser here to pay.")
    order_id: str = Field(examples=["ord_42"])
    expires_at: datetime | None


class TopupCreate(BaseModel):
    """A wallet top-up paid with a PaymentIntent.

    Three ways: confirmed by the client (Stripe's mobile/web SDK, the default); confirmed
    by the server with a saved card (`payment_method`); or charged off-session to the
    default (or given) saved card while the customer is away (`off_session: true`). The
    `service` role tops up a user's wallet off-session by naming `user_id`."""

    amount: MinorAmount
    currency: Currency
    payment_method_id: str | None = Field(
        None,
        max_length=255,
        pattern=r"^pm_[A-Za-z0-9_]+$",
        description="A Stripe PaymentMethod (`pm_...`) for the client to confirm with.",
    )
    payment_method: str | None = Field(
        None,
        max_length=64,
        pattern=r"^pmt_[0-9]+$",
        description="A saved card of the user (`GET /api/v1/me/payment-methods`): the "
        "PaymentIntent is confirmed by the server with it. 3-D Secure may still be needed: "
        "the answer is then `requires_action` with `client_secret` and `next_action`.",
        examples=["pmt_12"],
    )
    off_session: bool = Field(
        False,
        description="Charge a saved card with the customer absent (`payment_method`, else "
        "the default card). If the bank wants the customer, the top-up is "
        "`requires_action` with a `next_action.url` to finish it on-session and a "
        "`topup.requires_action` event.",
    )
    user_id: str | None = Field(
        None,
        max_length=255,
        description="`service` role only, with `off_session: true`: the user whose wallet is "
        "topped up (with their saved card).",
    )
    automatic_payment_methods: bool = Field(
        True, description="Let Stripe offer the payment methods enabled in the dashboard."
    )

    @model_validator(mode="after")
    def _one_card(self) -> TopupCreate:
        if self.payment_method is not None and self.payment_method_id is not None:
            raise ValueError("Give payment_method (a saved card) or payment_method_id, not both.")
        if self.off_session and self.payment_method_id is not None:
            raise ValueError("An off-session top-up charges a saved card (payment_method).")
        if self.user_id is not None and not self.off_session:
            raise ValueError("A top-up for another user (user_id) must be off_session.")
        return self


class TopupNextAction(BaseModel):
    """What the customer must do before the payment can complete."""

    type: str = Field(
        description="Stripe's next action (`use_stripe_sdk`, `redirect_to_url`: pass "
        "`client_secret` to Stripe's SDK, e.g. `handleNextAction`), or `finish_on_session`: "
        "open `url` with the customer present.",
        examples=["finish_on_session"],
    )
    url: str | None = Field(
        None, description="A page where the customer finishes the payment, when there is one."
    )


class TopupRead(BaseModel):
    payment_intent_id: str = Field(examples=["pi_3MtwBw"])
    client_secret: str | None = Field(
        description="Hand to Stripe's mobile/web SDK to confirm (3-D Secure is handled there)."
    )
    status: str = Field(
        description="Stripe's PaymentIntent status; `requires_action` when the customer must "
        "authenticate (see `next_action`)."
    )
    order_id: str = Field(examples=["ord_42"])
    next_action: TopupNextAction | None = Field(
        None, description="Set with status `requires_action`."
    )


class OrderRead(BaseModel):
    id: str = Field(examples=["ord_42"])
    # An open string, not the Checkout enum: purposes are plug-ins (orders/purposes.py),
    # so a client must tolerate one it does not know yet.
    purpose: str = Field(
        max_length=16,
        description="What the order pays for: topup, order, escrow or direct today; "
        "new purposes may be added, so treat an unknown value as a generic payment.",
        examples=["topup"],
    )
    status: OrderStatus
    amount: int = Field(description="Minor units paid (after discount).")
    currency: str
    discount_amount: int = Field(description="Minor units taken off by a discount code.")
    refunded_amount: int
    failure_code: str | None = Field(
        description="Why it failed or expired (e.g. card_declined, expired)."
    )
    checkout_url: str | None
    expires_at: datetime | None
    created_at: datetime
    succeeded_at: datetime | None
    review_reason: str | None = Field(
        None,
        description="Set with status `needs_review`: Stripe reported a payment that differs "
        "from the order (`amount_mismatch`, `currency_mismatch`); nothing was credited and "
        "an operator decides (GET /api/v1/admin/orders/needs-review).",
    )
    paid_amount: int | None = Field(
        None, description="With `needs_review`: what Stripe reported as paid (minor units)."
    )
    paid_currency: str | None = Field(None, description="With `needs_review`: its currency.")
    action_url: str | None = Field(
        None,
        description="With `requires_action`: where the customer finishes the payment "
        "on-session (an off-session top-up the bank wants authenticated).",
    )
    source: Literal["card", "wallet"] = Field(
        "card",
        description="`card`: paid through Stripe; `wallet`: paid from the customer's "
        "available balance (`POST /api/v1/orders`), refunds go back to the wallet.",
    )
    granted_credit: int = Field(
        0,
        description="order: wallet credit the paid order gave the buyer (the price's "
        "`grants_credit` x quantity), minor units of `currency`; 0 for a plain sale.",
    )
    credit_taken_back: int = Field(
        0, description="Of `granted_credit`, what refunds took back from the wallet so far."
    )


class WalletPaymentCreate(BaseModel):
    """Pay a catalog order or a direct payment from the wallet (`source: "wallet"`).

    One database transaction: the order is written `succeeded` and the money moves in
    the ledger, or nothing happens (402 `insufficient_funds`, 409 `wallet_frozen`)."""

    source: Literal["wallet"] = Field(
        description="Where the money comes from: the caller's available balance."
    )
    purpose: Literal["order", "direct"] = Field(
        description="order: buy catalog item `price`; direct: pay a payee's project "
        "(`payee_id`, `project_id`, `amount`, `currency`)."
    )
    price: str | None = Field(
        None, max_length=64, description="order only: the price's lookup key."
    )
    quantity: int = Field(1, ge=1, le=100, description="order only.")
    discount_code: str | None = Field(None, max_length=64, description="order only.")
    amount: MinorAmount | None = Field(
        None, description="direct only: minor units, within the currency's debit limits."
    )
    currency: Currency | None = Field(None, description="direct only: the project's currency.")
    payee_id: str | None = Field(None, max_length=255, description="direct only.")
    project_id: str | None = Field(
        None, max_length=64, description="direct only.", examples=["prj_12"]
    )
    session_id: str | None = Field(
        None, max_length=64, description="direct only, optional.", examples=["ses_40"]
    )
    kind: Literal["tip", "request"] | None = Field(
        None, description="direct only: tip (the default) or request."
    )


class OrderList(ListPage[OrderRead]):
    pass


class PriceCreate(BaseModel):
    lookup_key: str = Field(max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1, max_length=200)
    unit_amount: MinorAmount
    currency: Currency
    grants_credit: MinorAmount | None = Field(
        None,
        description="Wallet credit (minor units, same currency) each unit bought gives the "
        "buyer once the order is paid (card or wallet); refunds take it back in proportion. "
        "Omit for a plain sale (platform revenue). Follows Stripe's steps for the currency "
        "like `unit_amount` (whole krónur for `isk`, tens for three-decimal currencies): "
        "otherwise 422 `amount_not_in_steps` with `field: grants_credit`.",
    )


class PriceRead(BaseModel):
    lookup_key: str
    name: str
    unit_amount: int
    currency: str
    active: bool
    grants_credit: int | None = None


class PriceList(ListPage[PriceRead]):
    has_more: bool = False


class DiscountCodeCreate(BaseModel):
    code: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    percent_off_bps: int | None = Field(None, ge=1, le=10_000, description="e.g. 1500 = 15%.")
    amount_off: MinorAmount | None = None
    currency: Currency | None = Field(None, description="Required with amount_off.")
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    max_redemptions: int | None = Field(None, ge=1, le=2_147_483_647)


class DiscountCodeRead(BaseModel):
    code: str
    percent_off_bps: int | None
    amount_off: int | None
    currency: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    max_redemptions: int | None
    redemptions: int
    active: bool
