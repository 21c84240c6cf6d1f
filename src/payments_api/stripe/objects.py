"""Typed Stripe objects: the fields of Stripe's objects that the service reads.

Stripe's JSON is parsed into these once, at the boundary: by the gateway for its
answers and by the webhook inbox for ``event.data.object``. Code past the boundary reads
attributes with their types (``intent.amount_received`` is an ``int``; ``metadata`` is
always a dict) instead of repeating ``int(obj.get(...) or 0)`` at every stop.

Each model lists only what the service uses and ignores the rest (Stripe adds fields in
every API version). A reference Stripe may send either as an id or as the expanded
object (``latest_charge``, ``customer``, ...) is an :data:`ExpandableId`: always the id.
These are plain pydantic models, so domain code may import them (only this package
imports ``stripe``).
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from payments_api.stripe.refs import stripe_id


def _id_of(value: Any) -> Any:
    # An expanded reference is the object itself: keep its id. Anything else is left to
    # the type check (a str, None, or an error).
    return stripe_id(value) if isinstance(value, dict) else value


ExpandableId = Annotated[str | None, BeforeValidator(_id_of)]
"""A reference Stripe sends as ``"pi_..."`` or, when expanded, as the object."""


def _metadata(value: Any) -> Any:
    # Stripe sends ``{}`` for no metadata; some older payloads and test fixtures ``null``.
    return {} if value is None else value


Metadata = Annotated[dict[str, str], BeforeValidator(_metadata)]


class StripeModel(BaseModel):
    """A part of Stripe's answer that the service reads. Frozen: an object is Stripe's
    word at one moment, not something to edit."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class StripeObject(StripeModel):
    """What every Stripe object the service reads has: its id."""

    id: str


class PaymentError(StripeModel):
    """``last_payment_error``: only Stripe's machine codes (its human text is never
    stored or shown)."""

    code: str | None = None
    decline_code: str | None = None


class RedirectToUrl(StripeModel):
    url: str | None = None


class NextAction(StripeModel):
    """What the customer must still do (3-D Secure, a redirect)."""

    type: str | None = None
    redirect_to_url: RedirectToUrl | None = None


class PaymentIntent(StripeObject):
    amount: int
    amount_received: int = 0
    amount_capturable: int = 0
    currency: str
    status: str
    metadata: Metadata = {}
    latest_charge: ExpandableId = None
    cancellation_reason: str | None = None
    last_payment_error: PaymentError | None = None
    client_secret: str | None = None
    next_action: NextAction | None = None


class CheckoutSession(StripeObject):
    metadata: Metadata = {}
    payment_intent: ExpandableId = None
    payment_status: str | None = None
    amount_total: int | None = None
    currency: str | None = None
    url: str | None = None
    expires_at: int | None = None
    """Unix seconds."""


class SetupIntent(StripeObject):
    metadata: Metadata = {}
    customer: ExpandableId = None
    payment_method: ExpandableId = None
    status: str | None = None
    client_secret: str | None = None


class Transfer(StripeObject):
    metadata: Metadata = {}
    amount_reversed: int = 0


class Payout(StripeObject):
    amount: int
    currency: str
    status: str
    failure_code: str | None = None
    arrival_date: int | None = None
    """Unix seconds."""
    created: int | None = None
    """Unix seconds."""


class PayoutList(StripeModel):
    """A page of a connected account's payouts."""

    data: list[Payout] = []
    has_more: bool = False


class Refund(StripeObject):
    amount: int
    currency: str
    status: str
    """pending, requires_action, succeeded, failed or canceled."""
    reason: str | None = None
    failure_reason: str | None = None
    metadata: Metadata = {}
    payment_intent: ExpandableId = None
    charge: ExpandableId = None
    created: int = 0
    """Unix seconds."""


class RefundList(StripeModel):
    """A charge's embedded ``refunds`` list (older API versions embed it)."""

    data: list[Refund] = []
    has_more: bool = False


class Charge(StripeObject):
    amount: int
    amount_captured: int = 0
    captured: bool = True
    currency: str
    payment_intent: ExpandableId = None
    refunds: RefundList | None = None


class FeeTransaction(StripeObject):
    """A charge's balance transaction: what Stripe took as its fee once it settled."""

    fee: int = 0
    currency: str | None = None


def _expanded_only(value: Any) -> Any:
    # Before the charge settles, or when not expanded, Stripe names the transaction by
    # its id: no fee to read yet.
    return None if isinstance(value, str) else value


class ChargeWithFee(Charge):
    """A charge retrieved with ``balance_transaction`` expanded."""

    balance_transaction: Annotated[FeeTransaction | None, BeforeValidator(_expanded_only)] = None


def _objects_only(value: Any) -> Any:
    # Stripe embeds a dispute's balance transactions as objects; an id alone carries
    # nothing to book, so it is left out (as before the types) rather than refused.
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else value


class DisputeFunds(StripeModel):
    """One of a dispute's balance transactions: money Stripe withdrew (negative) or
    reinstated (positive), with its fee."""

    id: str | None = None
    """None for what the service books when Stripe has not shown the transaction."""
    amount: int
    fee: int = 0
    net: int | None = None
    currency: str | None = None


class Dispute(StripeObject):
    amount: int
    currency: str
    status: str
    reason: str | None = None
    payment_intent: ExpandableId = None
    charge: ExpandableId = None
    balance_transactions: Annotated[list[DisputeFunds], BeforeValidator(_objects_only)] = []


class AccountRequirements(StripeModel):
    """What Stripe still needs from a connected account's payee."""

    disabled_reason: str | None = None
    currently_due: list[str] = []
    past_due: list[str] = []
    pending_verification: list[str] = []


class PayoutSettings(StripeModel):
    schedule: dict[str, Any] | None = None


class AccountSettings(StripeModel):
    payouts: PayoutSettings | None = None


class Account(StripeObject):
    """A Connect account (Express), as ``account.updated`` carries it or the API answers."""

    object: str = "account"
    metadata: Metadata = {}
    charges_enabled: bool = False
    payouts_enabled: bool = False
    details_submitted: bool = False
    requirements: AccountRequirements | None = None
    settings: AccountSettings | None = None
    created: int | None = None
    """Unix seconds."""


class AccountLink(StripeModel):
    """A single-use onboarding link (Stripe gives it no id)."""

    url: str
    expires_at: int | None = None
    """Unix seconds."""


class LoginLink(StripeModel):
    """A one-time Express dashboard link."""

    url: str


class Customer(StripeObject):
    """A user's Stripe Customer: the service keeps only its id."""


class BalanceAmount(StripeModel):
    amount: int
    currency: str


class Balance(StripeModel):
    """The money Stripe holds for the platform or a connected account, per currency."""

    available: list[BalanceAmount] = []
    pending: list[BalanceAmount] = []


class Card(StripeModel):
    brand: str | None = None
    display_brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    fingerprint: str | None = None


class PaymentMethod(StripeObject):
    type: str
    customer: ExpandableId = None
    card: Card | None = None


LooseId = Annotated[str | None, BeforeValidator(stripe_id)]
"""A reference of an object of whatever kind Stripe made: its id when it has one, else
None (a field of the same name on another kind of object is no reference)."""


def _source_object(value: Any) -> Any:
    # Unexpanded, a source is only its id.
    return {"id": value} if isinstance(value, str) else value


class BalanceSource(StripeObject):
    """What a balance transaction moved money for (its expanded ``source``: a charge, a
    refund, a transfer, an application fee, ...), with the references that tie it to a
    payment. Each kind has some of them; the others stay None."""

    payment_intent: LooseId = None
    transfer: LooseId = None
    application_fee: LooseId = None
    source_transaction: LooseId = None
    originating_transaction: LooseId = None
    charge: LooseId = None
    transfer_reversal: LooseId = None
    source_refund: LooseId = None
    fee: LooseId = None


class BalanceTransaction(StripeObject):
    """One movement of the platform's money at Stripe (reconciliation's unit)."""

    type: str
    amount: int
    currency: str
    fee: int = 0
    net: int | None = None
    created: int
    """Unix seconds."""
    reporting_category: str | None = None
    source: Annotated[BalanceSource | None, BeforeValidator(_source_object)] = None


class OriginatingCharge(StripeObject):
    payment_intent: ExpandableId = None


class ApplicationFee(StripeObject):
    """An application fee retrieved with ``originating_transaction`` expanded (the
    platform's destination charge)."""

    originating_transaction: Annotated[
        OriginatingCharge | None, BeforeValidator(_expanded_only)
    ] = None


class UndeliveredEvent(StripeObject):
    """An event as reconciliation lists it: which, of what type, when."""

    type: str
    created: int
    """Unix seconds."""


class MalformedStripeObject(ValueError):
    """A Stripe object without a field the service needs, or with a field of the wrong
    type: nothing to apply, and trying again will not change it."""


ObjectT = TypeVar("ObjectT", bound=StripeModel)


def parse_object(model: type[ObjectT], data: Any) -> ObjectT:
    """``data`` (Stripe's JSON object) as ``model``, or :class:`MalformedStripeObject`
    naming the fields that did not fit (never their values: they may be personal)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in error["loc"]) for error in exc.errors()})
        raise MalformedStripeObject(
            f"{model.__name__} without the expected {', '.join(f for f in fields if f) or 'shape'}"
        ) from None
