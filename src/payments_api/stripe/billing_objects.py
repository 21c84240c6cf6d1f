"""Typed Stripe Billing objects: the fields of products, prices, subscriptions and
invoices that the service reads.

Parsed once at the boundary, like :mod:`payments_api.stripe.objects` (whose base,
``ExpandableId`` and ``Metadata`` these share): by the gateway for its billing answers
and by the webhook inbox for the ``product.*``, ``price.*``, ``customer.subscription.*``
and ``invoice.*`` events. Only what the service uses is listed; the rest is ignored.
(Mutable defaults are ``Field(default_factory=...)`` here: ruff cannot see that the
imported ``StripeObject`` is a pydantic model, which copies its defaults anyway.)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from payments_api.stripe.objects import ExpandableId, Metadata, StripeObject


class _Part(BaseModel):
    """A part of a Stripe object that has no id of its own."""

    model_config = ConfigDict(frozen=True, extra="ignore")


# -- plans ------------------------------------------------------------------------------------
class MarketingFeature(_Part):
    name: str | None = None


class Product(StripeObject):
    name: str | None = None
    description: str | None = None
    active: bool = False
    deleted: bool = False
    metadata: Metadata = Field(default_factory=dict)
    marketing_features: list[MarketingFeature] = Field(default_factory=list)
    updated: int | None = None
    """Unix seconds."""


class Recurring(_Part):
    interval: str | None = None
    """day, week, month or year."""
    interval_count: int | None = None
    trial_period_days: int | None = None


class Price(StripeObject):
    active: bool = False
    deleted: bool = False
    currency: str | None = None
    unit_amount: int | None = None
    """None for a price without a fixed amount (tiered, metered, customer-chosen)."""
    recurring: Recurring | None = None
    """None for a one-time price."""
    product: ExpandableId = None
    lookup_key: str | None = None
    nickname: str | None = None
    metadata: Metadata = Field(default_factory=dict)


# -- invoices ---------------------------------------------------------------------------------
class ClientSecret(_Part):
    """What the customer confirms a payment with: an invoice's ``confirmation_secret``,
    or an expanded PaymentIntent or SetupIntent read for its client secret only."""

    client_secret: str | None = None


class TaxAmount(_Part):
    """One of ``total_taxes`` (the pinned API version) or ``total_tax_amounts`` (older)."""

    amount: int = 0


class SubscriptionDetails(_Part):
    subscription: ExpandableId = None
    metadata: Metadata = Field(default_factory=dict)
    """The subscription's metadata when the invoice was made."""


class InvoiceParent(_Part):
    subscription_details: SubscriptionDetails | None = None


class InvoiceStatusTransitions(_Part):
    paid_at: int | None = None
    """Unix seconds."""


class Invoice(StripeObject):
    status: str | None = None
    """draft, open, paid, uncollectible or void."""
    billing_reason: str | None = None
    currency: str
    amount_due: int = 0
    amount_paid: int = 0
    total: int = 0
    attempt_count: int = 0
    customer: ExpandableId = None
    parent: InvoiceParent | None = None
    subscription: ExpandableId = None
    """Older API versions name the subscription here instead of in ``parent``."""
    period_start: int | None = None
    period_end: int | None = None
    hosted_invoice_url: str | None = None
    status_transitions: InvoiceStatusTransitions | None = None
    total_taxes: list[TaxAmount] | None = None
    total_tax_amounts: list[TaxAmount] | None = None
    tax: int | None = None
    confirmation_secret: ClientSecret | None = None
    payment_intent: ClientSecret | str | None = None
    """Older API versions: the invoice's PaymentIntent (expanded: its client secret)."""

    @property
    def subscription_details(self) -> SubscriptionDetails:
        """The subscription the invoice bills (empty when it bills none)."""
        details = self.parent.subscription_details if self.parent is not None else None
        return details if details is not None else SubscriptionDetails()

    @property
    def stripe_subscription_id(self) -> str | None:
        return self.subscription_details.subscription or self.subscription


class PayingIntent(StripeObject):
    """An invoice payment's expanded PaymentIntent, read for the charge that paid."""

    latest_charge: ExpandableId = None


class InvoicePaymentDetail(_Part):
    charge: ExpandableId = None
    payment_intent: PayingIntent | str | None = None


class InvoicePayment(StripeObject):
    """One payment of an invoice (``/v1/invoice_payments``)."""

    status: str | None = None
    """open, paid or canceled."""
    payment: InvoicePaymentDetail | None = None

    @property
    def charge(self) -> str | None:
        """The charge that paid: named by the payment, or its PaymentIntent's latest."""
        detail = self.payment or InvoicePaymentDetail()
        if detail.charge is not None:
            return detail.charge
        intent = detail.payment_intent
        return intent.latest_charge if isinstance(intent, PayingIntent) else None


class InvoiceLineDetails(_Part):
    proration: bool = False


class InvoiceLineParent(_Part):
    subscription_item_details: InvoiceLineDetails | None = None
    invoice_item_details: InvoiceLineDetails | None = None


class InvoiceLineItem(_Part):
    description: str | None = None
    amount: int = 0
    parent: InvoiceLineParent | None = None

    @property
    def proration(self) -> bool:
        parent = self.parent or InvoiceLineParent()
        details = parent.subscription_item_details or parent.invoice_item_details
        return details is not None and details.proration


class InvoiceLines(_Part):
    data: list[InvoiceLineItem] = []


class InvoicePreview(_Part):
    """The invoice a subscription change would produce. Not a StripeObject: a preview
    is not stored at Stripe, and older API versions give it no id."""

    amount_due: int = 0
    currency: str | None = None
    lines: InvoiceLines = InvoiceLines()


# -- subscriptions ----------------------------------------------------------------------------
class ItemPrice(StripeObject):
    """A subscription item's price (Stripe always embeds it)."""

    product: ExpandableId = None


class SubscriptionItem(StripeObject):
    price: ItemPrice | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None


class SubscriptionItems(_Part):
    data: list[SubscriptionItem] = []


class PauseCollection(_Part):
    behavior: str | None = None
    resumes_at: int | None = None


class Subscription(StripeObject):
    status: str
    customer: ExpandableId = None
    metadata: Metadata = Field(default_factory=dict)
    items: SubscriptionItems = SubscriptionItems()
    current_period_start: int | None = None
    current_period_end: int | None = None
    """Older API versions keep the period on the subscription, not on its item."""
    trial_end: int | None = None
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    ended_at: int | None = None
    created: int | None = None
    pause_collection: PauseCollection | None = None
    latest_invoice: Invoice | str | None = None
    """Expanded (an :class:`Invoice`) when the gateway asked for it, else its id."""
    pending_setup_intent: ClientSecret | str | None = None

    @property
    def first_item(self) -> SubscriptionItem | None:
        return self.items.data[0] if self.items.data else None

    @property
    def latest_invoice_id(self) -> str | None:
        invoice = self.latest_invoice
        return invoice.id if isinstance(invoice, Invoice) else invoice
