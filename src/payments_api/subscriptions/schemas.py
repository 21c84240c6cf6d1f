from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SubscriptionStatus = Literal[
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "unpaid",
    "canceled",
    "paused",
]


class PlanRead(BaseModel):
    """A recurring price of a Stripe product, as subscribers see it."""

    price: str = Field(description="Stripe Price id: what `POST /me/subscriptions` takes.")
    product: str = Field(description="Stripe Product id.")
    name: str
    description: str | None
    family: str = Field(description="Plan family (product `metadata.family`, else the product).")
    amount: int = Field(description="Per interval, in minor units.")
    currency: str
    interval: Literal["day", "week", "month", "year"]
    interval_count: int
    trial_period_days: int | None
    lookup_key: str | None
    nickname: str | None
    features: list[str] = Field(description="The product's marketing features.")
    metadata: dict[str, str] = Field(description="The price's metadata over the product's.")
    monthly_credit: int | None = Field(
        description="Wallet credit per paid invoice, in minor units of `currency`."
    )
    active: bool = Field(description="False for an archived price (existing subscribers).")


class PlanList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PlanRead]


class PlanSyncResult(BaseModel):
    products: int = Field(description="Products read from Stripe.")
    prices: int = Field(description="Recurring prices read from Stripe.")


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price: str = Field(
        min_length=1, max_length=255, description="Stripe Price id of an active plan."
    )
    payment_method: str | None = Field(
        None,
        pattern=r"^pm_[A-Za-z0-9_]+$",
        max_length=255,
        description="A Stripe PaymentMethod of the customer; else the customer's default.",
    )
    trial: bool = Field(True, description="Start with the plan's trial, if it has one.")


PauseBehavior = Literal["void", "keep_as_draft", "mark_uncollectible"]


class PauseCollection(BaseModel):
    behavior: PauseBehavior = Field(
        description="Stripe's `pause_collection.behavior`: what happens to the invoices "
        "of the paused periods (`void`: voided, never charged)."
    )
    resumes_at: datetime | None = Field(
        None, description="When Stripe resumes collection by itself; null: until unpaused."
    )


class SubscriptionPause(BaseModel):
    model_config = ConfigDict(extra="forbid")

    behavior: PauseBehavior = Field(
        "void",
        description="Default `void`: the paused periods' invoices are voided, so nothing "
        "is charged and no plan credit is given for them.",
    )
    resumes_at: datetime | None = Field(
        None, description="Resume collection by itself at this time (in the future)."
    )


class SubscriptionRead(BaseModel):
    id: str = Field(examples=["subs_12"])
    status: SubscriptionStatus
    entitled: bool = Field(
        description="Whether the subscriber has the plan's benefits now: trialing, active, "
        "or past_due within the grace period, and payment collection not paused (a paused "
        "subscription stays `active` at Stripe but is not entitled)."
    )
    pause_collection: PauseCollection | None = Field(
        None, description="Set while payment collection is paused (`POST …/pause`)."
    )
    origin: Literal["api", "stripe"] = Field(
        "api",
        description="`stripe`: created outside this service (e.g. the Stripe dashboard) for "
        "a customer we know, and adopted from Stripe's events.",
    )
    plan: PlanRead | None
    cancel_at_period_end: bool
    current_period_start: datetime | None
    current_period_end: datetime | None
    trial_end: datetime | None
    past_due_since: datetime | None
    canceled_at: datetime | None
    ended_at: datetime | None
    stripe_subscription_id: str | None
    created_at: datetime


class SubscriptionCreated(SubscriptionRead):
    client_secret: str | None = Field(
        description="When the customer must act (pay or authenticate the first invoice, or "
        "set up a card for a trial): confirm it with Stripe.js or the mobile SDKs."
    )
    client_secret_type: Literal["payment_intent", "setup_intent"] | None


class SubscriptionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[SubscriptionRead]
    has_more: bool


class SubscriptionCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_period_end: bool = Field(
        True, description="Keep it until the paid period ends (true) or end it now."
    )


class SubscriptionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price: str = Field(min_length=1, max_length=255, description="The new Stripe Price id.")
    proration_date: int | None = Field(
        None,
        ge=0,
        description="The preview's `proration_date`, so the change prorates as previewed.",
    )


class PreviewLine(BaseModel):
    description: str | None
    amount: int
    proration: bool


class ProrationPreview(BaseModel):
    price: str
    amount_due: int = Field(description="What the next invoice would charge, minor units.")
    currency: str
    proration_date: int = Field(description="Pass it to the change to get these amounts.")
    lines: list[PreviewLine]


class InvoiceRead(BaseModel):
    id: str = Field(description="Stripe invoice id.", examples=["in_1Abc"])
    subscription_id: str
    status: str
    billing_reason: str | None
    amount_due: int
    amount_paid: int
    currency: str
    attempt_count: int
    period_start: datetime | None
    period_end: datetime | None
    hosted_invoice_url: str | None
    paid_at: datetime | None
    credited_amount: int | None
    refunded_amount: int = Field(0, description="Refunded so far (succeeded refunds).")
    credit_reversed: int = Field(
        0, description="The part of `credited_amount` taken back by those refunds."
    )
    tax_amount: int | None = Field(
        None,
        description="The tax in `amount_paid`, booked to the platform's `tax_collected` "
        "account rather than revenue; null until the invoice is paid.",
    )


class UnclaimedSubscriptionRead(BaseModel):
    """A subscription made at Stripe for a Stripe customer this service does not know."""

    stripe_subscription_id: str
    stripe_customer_id: str | None
    status: str = Field(description="Stripe's status as last reported.")
    stripe_price_id: str | None
    last_event_type: str | None
    first_seen_at: datetime
    updated_at: datetime


class UnclaimedSubscriptionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[UnclaimedSubscriptionRead]
