"""Pay-in purposes as plug-ins: what an order is *for* lives with its domain.

``orders/`` creates, pays and refunds orders and knows no purpose. Each purpose
(``topup``, ``order``, ``escrow``, ``direct``) is a small object in its own domain
(``topups/payin.py``, ``orders/catalog.py``, ``escrow/payin.py``, ``projects/direct.py``)
that says what to check when a Checkout order is created, what a paid, failed or
waiting order means, and what refunding a paid order means (whether it may be refunded,
where the money comes back from: the refund hooks, run by ``refunds/``). They are
registered in one place, ``payments_api/payins.py``.

Adding a purpose: one new module with a class (subclass ``BasePurpose`` for the no-op
defaults) and one ``PURPOSES.register(...)`` line in ``payins.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.types import EventType
from payments_api.kit.amounts import AmountNotInSteps, AmountOutOfRange, check_limits
from payments_api.money import charge_step
from payments_api.orders.models import Order
from payments_api.settings import Settings

if TYPE_CHECKING:
    from payments_api.auth import Principal
    from payments_api.ledger.service import LedgerService, NewTransaction, PostingSpec
    from payments_api.orders.refund_models import Refund
    from payments_api.orders.schemas import CheckoutSessionCreate
    from payments_api.problems import ProblemError
    from payments_api.users.models import User


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """A Checkout order being written (step 1 of a pay-in, inside its transaction: a
    refusal raised here rolls back the user row too)."""

    session: AsyncSession
    user: User
    body: CheckoutSessionCreate
    idempotency_key: str
    settings: Settings
    now: datetime


@dataclass(slots=True)
class CheckoutLine:
    """What the purpose adds to the Stripe Checkout Session: the line item's name, extra
    metadata and ``payment_intent_data`` (e.g. a destination charge, manual capture)."""

    name: str
    metadata: dict[str, str] = field(default_factory=dict)
    intent_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PaidPayment:
    """Stripe's confirmation of an order's payment, handed to ``Purpose.on_paid`` inside
    the webhook's transaction (amount and currency already match the order)."""

    session: AsyncSession
    settings: Settings
    ledger: LedgerService
    payment_intent_id: str
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class RefundTerms:
    """What a purpose allows when one of its orders is to be refunded (decided by
    ``Purpose.refund_terms`` in the refund's transaction, before the order is locked)."""

    refundable: bool = True
    refusal: ProblemError | None = None
    """Raised after the common checks when not ``refundable`` (else a generic refusal)."""
    from_wallet: bool = False
    """The pay-in credited the customer's wallet: the refund's whole amount is held from
    it until Stripe answers (otherwise only the order's credit taken back is held)."""
    reverse_into_hold: Callable[[AsyncSession, Refund, Order], Awaitable[None]] | None = None
    """Instead of holding from the customer's available, the purpose moves the refund's
    amount into their ``withdrawing`` itself (a completed job's settlement reversed);
    the order's refundable amount is then what was not reversed yet."""


@dataclass(frozen=True, slots=True)
class StripeRefundOptions:
    """What a purpose adds to the Stripe Refund of one of its orders."""

    reverse_transfer: bool = False
    refund_application_fee: bool = False
    payee_account: str | None = None
    """A connected account whose balance is read before Stripe is asked (what it can
    give back is kept on the refund as ``payee_coverable``)."""


class RefundBooking(Protocol):
    """A card refund of an order that Stripe confirmed (or reverted), handed to the
    purpose's refund hooks inside the settlement's transaction. The ``settle_*``
    methods book the standard ``refund`` transaction (cause ``stripe:refund:{re}``)."""

    session: AsyncSession
    ledger: LedgerService
    order: Order
    refund: Refund

    async def settle_from_wallet(self) -> None:
        """The money comes out of the customer's wallet: the hold, else (dashboard
        refunds) what is available, the rest from the platform's adjustments."""

    async def settle_from_sales(self) -> None:
        """The money comes out of the platform's sales (the credit taken back from the
        hold)."""

    async def settle_unbacked(self) -> None:
        """Nothing backs the refund: the platform's adjustments bear it."""

    def refund_transaction(
        self,
        type: str,
        postings: list[PostingSpec],
        *,
        description: str,
        step: str | None = None,
        **metadata: Any,
    ) -> NewTransaction:
        """A transaction of the refund that the purpose books itself: Stripe's refund
        (cause ``stripe:refund:{re}``), or with a ``step`` one of the refund's own
        (``refund:{id}:{step}``); its metadata names the refund and the order."""


class WalletRefundBooking(Protocol):
    """A refund of an order paid from the wallet, back to the wallet at once, handed to
    ``Purpose.on_refunded_to_wallet`` in the refund's transaction."""

    session: AsyncSession
    ledger: LedgerService
    order: Order
    refund: Refund

    def transaction(self, extra: list[PostingSpec], **metadata: Any) -> NewTransaction:
        """The ``wallet_refund`` transaction: the refund's amount to the customer's
        available, plus ``extra`` (where it comes from)."""

    async def from_sales(self) -> None:
        """Post the refund taken from the platform's sales."""


class Purpose(Protocol):
    """One pay-in purpose. ``name`` is the value stored in ``orders.purpose``."""

    name: str
    paid_event: EventType
    """The platform event emitted once when an order of this purpose is paid."""

    def check_checkout(
        self, body: CheckoutSessionCreate, principal: Principal, settings: Settings
    ) -> None:
        """Refuse a Checkout request before anything is written."""

    async def build_checkout_order(self, request: CheckoutRequest) -> Order:
        """The pending order (amount, currency, reference) for a Checkout request."""

    def checkout_line(self, order: Order) -> CheckoutLine:
        """The purpose's part of the Checkout Session parameters."""

    def takes_partial_capture(self, order: Order) -> bool:
        """Whether a payment below the order's amount is a partial capture (the order
        becomes what was paid) rather than a mismatch held for review."""

    async def on_paid(self, order: Order, payment: PaidPayment) -> None:
        """Book the money once (keys derived from the PaymentIntent: redeliveries and
        the second confirmation of one payment change nothing)."""

    async def on_failed(self, session: AsyncSession, order: Order) -> None:
        """After the order became ``failed`` or ``expired``."""

    async def on_requires_action(self, session: AsyncSession, order: Order) -> None:
        """After the order started waiting for the customer (3-D Secure)."""

    async def refund_terms(self, session: AsyncSession, order: Order) -> RefundTerms:
        """Whether (and how) an order may be refunded by the API; take the purpose's
        own locks here (they come before the order's)."""

    async def stripe_refund_options(
        self, session: AsyncSession, order: Order
    ) -> StripeRefundOptions:
        """The purpose's part of the Stripe Refund parameters."""

    async def on_refunded(self, booking: RefundBooking) -> None:
        """Stripe refunded (part of) the order: book where the money comes back from,
        once (the booking's cause key makes a second application impossible)."""

    async def on_refund_reverted(self, booking: RefundBooking) -> None:
        """A refund Stripe had reported succeeded failed afterwards (its postings are
        reversed by refunds): undo the purpose's own counts."""

    async def on_refunded_to_wallet(self, booking: WalletRefundBooking) -> None:
        """An order paid from the wallet is refunded to it: post where the money comes
        back from."""


class BasePurpose:
    """Defaults for a purpose: no Checkout, no partial capture, nothing on failure, no
    refunds by the API (a refund made in the Stripe dashboard is borne by the platform's
    adjustments)."""

    name: str = ""
    paid_event: EventType = EventType.order_paid

    def check_checkout(
        self, body: CheckoutSessionCreate, principal: Principal, settings: Settings
    ) -> None:
        return None

    async def build_checkout_order(self, request: CheckoutRequest) -> Order:
        raise NotImplementedError(f"Purpose {self.name!r} has no Checkout orders.")

    def checkout_line(self, order: Order) -> CheckoutLine:
        return CheckoutLine(name=self.name)

    def takes_partial_capture(self, order: Order) -> bool:
        return False

    async def on_paid(self, order: Order, payment: PaidPayment) -> None:
        raise NotImplementedError(f"Purpose {self.name!r} does not book payments.")

    async def on_failed(self, session: AsyncSession, order: Order) -> None:
        return None

    async def on_requires_action(self, session: AsyncSession, order: Order) -> None:
        return None

    async def refund_terms(self, session: AsyncSession, order: Order) -> RefundTerms:
        return RefundTerms(refundable=False)

    async def stripe_refund_options(
        self, session: AsyncSession, order: Order
    ) -> StripeRefundOptions:
        return StripeRefundOptions()

    async def on_refunded(self, booking: RefundBooking) -> None:
        await booking.settle_unbacked()

    async def on_refund_reverted(self, booking: RefundBooking) -> None:
        return None

    async def on_refunded_to_wallet(self, booking: WalletRefundBooking) -> None:
        await booking.from_sales()


class UnknownPurpose(LookupError):
    """An order names a purpose nothing registered (a wiring bug, never client input:
    the API's schemas only accept the documented purposes)."""


class PurposeRegistry:
    def __init__(self) -> None:
        self._purposes: dict[str, Purpose] = {}

    def register(self, purpose: Purpose) -> None:
        """Register ``purpose`` under its name; registering the same object again is a
        no-op (the app and the worker both wire), another object under a taken name is
        a bug."""
        existing = self._purposes.get(purpose.name)
        if existing is not None and existing is not purpose:
            raise ValueError(f"Purpose {purpose.name!r} is already registered.")
        self._purposes[purpose.name] = purpose

    def unregister(self, name: str) -> None:
        self._purposes.pop(name, None)

    @contextmanager
    def registered(self, purpose: Purpose) -> Iterator[Purpose]:
        """Register ``purpose`` for the duration of a block (tests)."""
        self.register(purpose)
        try:
            yield purpose
        finally:
            self.unregister(purpose.name)

    def get(self, name: str) -> Purpose:
        try:
            return self._purposes[name]
        except KeyError:
            raise UnknownPurpose(f"No pay-in purpose {name!r} is registered.") from None

    def names(self) -> list[str]:
        return sorted(self._purposes)


PURPOSES = PurposeRegistry()
"""The process's purposes, filled by ``payments_api.payins.wire_purposes``."""


def check_chosen_amount(settings: Settings, amount: int, currency: str) -> None:
    """An amount the customer chose (a top-up, a tip, a job offer): within the top-up
    limits of a supported currency and on Stripe's charge step."""
    check_limits(
        settings,
        "topup",
        amount,
        currency,
        what="Top-ups and direct payments",
        amounts_of="Top-ups",
    )
    AmountNotInSteps.check(amount, currency, charge_step(currency), "Charges")


def require_chosen_amount(body: CheckoutSessionCreate, settings: Settings, what: str) -> None:
    """A Checkout request whose purpose needs ``amount`` and ``currency`` (``what``
    names the payment in the refusal, e.g. "A top-up")."""
    if body.amount is None or body.currency is None:
        raise AmountOutOfRange(f"{what} needs `amount` and `currency`.")
    check_chosen_amount(settings, body.amount, body.currency)
