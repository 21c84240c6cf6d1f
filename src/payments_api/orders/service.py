"""Pay-ins: checkout sessions, PaymentIntent top-ups, orders and their confirmation.

A pay-in never holds a database transaction open across a Stripe call:
1. a short transaction provisions the user and writes the ``pending`` order (found
   again by the client's Idempotency-Key on a retry);
2. Stripe is called with keys derived from our ids (``customer:{user_id}``,
   ``checkout_session:{order_id}``, ``payment_intent:{order_id}``), so a retry after a
   timeout reaches the same Stripe object;
3. a second short transaction records Stripe's ids on the order.
The wallet is credited only by Stripe's events (``PayInConfirmation``), never here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.admin.errors import UserNotFound
from payments_api.auth import Principal
from payments_api.escrow import service as escrow_service
from payments_api.escrow.models import CaptureMethod, EscrowFunding
from payments_api.escrow.schemas import EscrowCreate
from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.installation import outgoing_keys
from payments_api.kit.amounts import AmountNotInSteps, AmountOutOfRange, CurrencyNotSupported
from payments_api.kit.clock import utcnow
from payments_api.kit.idempotency import IdempotencyKeyReused, fingerprint
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.money import basis_points_of, charge_step
from payments_api.orders.errors import (
    CheckoutWindowPassed,
    DiscountCodeExists,
    DiscountCodeInvalid,
    EscrowCheckoutIncomplete,
    OrderNotFound,
    PriceExists,
    PriceNotFound,
    RedirectUrlNotAllowed,
)
from payments_api.orders.models import DiscountCode, Order, Price
from payments_api.orders.repository import CatalogRepository, OrderRepository
from payments_api.orders.schemas import (
    CheckoutSessionCreate,
    CheckoutSessionRead,
    DiscountCodeCreate,
    DiscountCodeRead,
    OrderList,
    OrderRead,
    PriceCreate,
    PriceRead,
    TopupCreate,
    TopupNextAction,
    TopupRead,
)
from payments_api.payment_methods.declines import decline_problem, stable_decline_code
from payments_api.payment_methods.errors import NoDefaultPaymentMethod, PaymentMethodNotFound
from payments_api.payment_methods.models import PaymentMethod
from payments_api.payment_methods.repository import PaymentMethodRepository
from payments_api.problems import Forbidden
from payments_api.projects import direct as direct_payments
from payments_api.settings import Settings
from payments_api.stripe.errors import CardDeclined
from payments_api.stripe.gateway import StripeGateway
from payments_api.users.models import User
from payments_api.users.repository import UserRepository

log = logging.getLogger(__name__)

PAYINS_NEEDING_REVIEW = Counter(
    "payments_payins_needing_review_total",
    "Paid pay-ins not credited because Stripe's amount or currency differs from the order",
    ["reason"],
)

PAYINS = Counter(
    "payments_payins_total",
    "Pay-ins that reached an outcome, by purpose and outcome (succeeded, failed, expired)",
    ["purpose", "outcome"],
)

ORDER_PREFIX = "ord"
PAYMENT_METHOD_PREFIX = "pmt"  # payment_methods.service's prefix (imported from here)


def order_read(order: Order) -> OrderRead:
    return OrderRead(
        id=public_id(ORDER_PREFIX, order.id),
        purpose=order.purpose,
        status=order.status,
        amount=order.amount,
        currency=order.currency,
        discount_amount=order.discount_amount,
        refunded_amount=order.refunded_amount,
        failure_code=order.failure_code,
        checkout_url=order.checkout_url if order.status == "pending" else None,
        expires_at=order.expires_at,
        created_at=order.created_at,
        succeeded_at=order.succeeded_at,
        review_reason=order.review_reason,
        paid_amount=order.paid_amount,
        paid_currency=order.paid_currency,
        action_url=order.action_url if order.status == "requires_action" else None,
        source="wallet" if order.channel == "wallet" else "card",
        granted_credit=order.granted_credit_amount,
        credit_taken_back=order.credit_taken_back_amount,
    )


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        # .port raises ValueError for a port that is not a number or out of range.
        port_value = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = port_value or default_port
    suffix = "" if port == default_port else f":{port}"
    return f"{parts.scheme}://{parts.hostname.lower()}{suffix}"


async def ensure_customer(
    sessionmaker: async_sessionmaker[AsyncSession], stripe: StripeGateway, user: User
) -> str:
    """The user's Stripe Customer, created once (the key makes concurrent first calls
    return the same customer) and stored on the user. Called with no transaction open."""
    if user.stripe_customer_id:
        return user.stripe_customer_id
    customer = await stripe.create_customer(
        user_id=user.id,
        email=user.email,
        idempotency_key=(await outgoing_keys(sessionmaker)).derive("customer", user.id),
    )
    async with sessionmaker.begin() as session:
        await session.execute(
            update(User)
            .where(User.id == user.id, User.stripe_customer_id.is_(None))
            .values(stripe_customer_id=customer["id"])
        )
        stored = await UserRepository(session).get(user.id)
        assert stored is not None  # noqa: S101 - provisioned before
        user.stripe_customer_id = stored.stripe_customer_id
    return user.stripe_customer_id or customer["id"]


async def priced_order(
    session: AsyncSession,
    user: User,
    *,
    price_key: str | None,
    quantity: int,
    discount_code: str | None,
    now: datetime,
    channel: str = "checkout_session",
) -> Order:
    """A pending catalog order priced on the server (the client never sends the price),
    with its discount redeemed and the wallet credit it will grant fixed now."""
    catalog = CatalogRepository(session)
    price = await catalog.active_price(price_key or "")
    if price is None:
        raise PriceNotFound(f"No active price {price_key!r}.")
    gross = price.unit_amount * quantity
    discount_amount, discount_id = 0, None
    if discount_code:
        discount = await catalog.redeem_discount(discount_code, now)
        if discount is None or (
            discount.currency is not None and discount.currency != price.currency
        ):
            raise DiscountCodeInvalid(f"The code {discount_code!r} cannot be used.")
        discount_id = discount.id
        discount_amount = (
            basis_points_of(gross, discount.percent_off_bps)
            if discount.percent_off_bps is not None
            else min(discount.amount_off or 0, gross)
        )
        # Stripe's steps (isk whole krónur, three-decimal currencies tens): prices
        # are on the step, so a discount rounded down to it keeps the total on it.
        discount_amount -= discount_amount % charge_step(price.currency)
    if gross - discount_amount <= 0:
        raise DiscountCodeInvalid("The discount leaves nothing to pay.")
    return Order(
        user_id=user.id,
        purpose="order",
        channel=channel,
        status="pending",
        amount=gross - discount_amount,
        currency=price.currency,
        price_id=price.id,
        quantity=quantity,
        discount_code_id=discount_id,
        discount_amount=discount_amount,
        reference={"price": price.lookup_key},
        granted_credit_amount=(price.grants_credit or 0) * quantity,
    )


async def grant_credit(
    ledger: ledger_service.LedgerService, order: Order
) -> ledger_service.PostResult | None:
    """A paid catalog order whose price grants wallet credit credits the buyer's
    available balance by it, out of the sale (``order:{id}:credit``, once). The sale's
    own transaction booked the whole amount to ``sales``; what the platform keeps as
    revenue is the amount less the credit it owes the buyer."""
    if not order.granted_credit_amount:
        return None
    return await ledger.post(
        ledger_service.NewTransaction(
            type="order_credit",
            cause_type=CauseType.system,
            cause_key=f"order:{order.id}:credit",
            description=f"Wallet credit granted by {public_id(ORDER_PREFIX, order.id)}",
            metadata={"order_id": order.id, "price": order.reference.get("price")},
            postings=[
                ledger_service.PostingSpec(
                    ledger_service.AccountRef.platform(AccountKind.sales, order.currency),
                    -order.granted_credit_amount,
                ),
                ledger_service.PostingSpec(
                    ledger_service.AccountRef.user(
                        order.user_id, AccountKind.available, order.currency
                    ),
                    order.granted_credit_amount,
                ),
            ],
        )
    )


class PayInService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeGateway,
        settings: Settings,
        principal: Principal,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe
        self.settings = settings
        self.principal = principal
        self.now = now

    # -- validation --------------------------------------------------------------------
    def _check_redirects(self, *urls: str) -> None:
        allowed = {_origin(o) for o in self.settings.redirect_origins()}
        for url in urls:
            origin = _origin(url)
            if origin is None or origin not in allowed:
                raise RedirectUrlNotAllowed(
                    "success_url and cancel_url must start with an allowed frontend origin.",
                    allowed_origins=sorted(o for o in allowed if o),
                )

    def _check_topup_amount(self, amount: int, currency: str) -> None:
        limits = self.settings.limits(currency, "topup")
        if limits is None:
            raise CurrencyNotSupported.refuse(
                "Top-ups and direct payments", currency, sorted(self.settings.limits_table())
            )
        if not limits.minimum <= amount <= limits.maximum:
            raise AmountOutOfRange(
                f"Top-ups in {currency} must be between {limits.minimum} and "
                f"{limits.maximum} minor units.",
                minimum=limits.minimum,
                maximum=limits.maximum,
            )
        AmountNotInSteps.check(amount, currency, charge_step(currency), "Charges")

    # -- shared steps --------------------------------------------------------------------
    async def _find_or_create_order(
        self,
        idempotency_key: str,
        request_fingerprint: str,
        build: Any,
        *,
        for_user: str | None = None,
    ) -> tuple[Order, User]:
        """Step 1: provision the user and write (or find again) the pending order.
        ``for_user``: the order is another user's (a ``service`` caller), who must exist."""
        async with self.sessionmaker.begin() as session:
            if for_user is None:
                user = await UserRepository(session).upsert_from_principal(self.principal)
            else:
                target = await UserRepository(session).get(for_user)
                if target is None:
                    raise UserNotFound("No such user.")
                user = target
            orders = OrderRepository(session)
            existing = await orders.by_idempotency_key(user.id, idempotency_key)
            if existing is not None:
                if existing.request_fingerprint != request_fingerprint:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was used for a different payment."
                    )
                return existing, user
            order: Order = await build(session, user)
            order.idempotency_key = idempotency_key
            order.request_fingerprint = request_fingerprint
            try:
                async with session.begin_nested():
                    await orders.add(order)
            except IntegrityError:
                # A concurrent twin with the same key won: use its order.
                twin = await orders.by_idempotency_key(user.id, idempotency_key)
                if twin is None or twin.request_fingerprint != request_fingerprint:
                    raise IdempotencyKeyReused() from None
                return twin, user
            return order, user

    async def _ensure_customer(self, user: User) -> str:
        return await ensure_customer(self.sessionmaker, self.stripe, user)

    async def _record(self, order_id: int, **values: Any) -> Order:
        async with self.sessionmaker.begin() as session:
            order = await OrderRepository(session).get(order_id, for_update=True)
            assert order is not None  # noqa: S101 - written in step 1
            for name, value in values.items():
                if getattr(order, name) is None:  # never overwrite what an event recorded
                    setattr(order, name, value)
            order.updated_at = self.now()
            return order

    # -- checkout --------------------------------------------------------------------------
    async def create_checkout(
        self, body: CheckoutSessionCreate, idempotency_key: str
    ) -> CheckoutSessionRead:
        """Create (or find again) the order and its Stripe Checkout Session."""
        self._check_redirects(body.success_url, body.cancel_url)
        topup_amount, topup_currency = 0, ""
        if body.purpose == "escrow" and not self.principal.has_role("customer"):
            raise Forbidden("Paying for a job needs the customer role.")
        if body.purpose in ("topup", "direct", "escrow"):
            if body.amount is None or body.currency is None:
                what = {"topup": "A top-up", "direct": "A direct payment"}.get(
                    body.purpose, "A job payment"
                )
                raise AmountOutOfRange(f"{what} needs `amount` and `currency`.")
            # A tip or pay-per-request is chosen by the customer like a top-up, within
            # the same limits.
            self._check_topup_amount(body.amount, body.currency)
            topup_amount, topup_currency = body.amount, body.currency
        elif body.price is None:
            raise PriceNotFound("An order needs `price` (a lookup key).")
        request_fingerprint = fingerprint(body.model_dump(mode="json"))

        async def build(session: AsyncSession, user: User) -> Order:
            if body.purpose == "topup":
                return Order(
                    user_id=user.id,
                    purpose="topup",
                    channel="checkout_session",
                    status="pending",
                    amount=topup_amount,
                    currency=topup_currency,
                    reference={},
                )
            if body.purpose == "direct":
                # Checked in this transaction: a refusal rolls back the user row too.
                target = await direct_payments.resolve_target(
                    session,
                    payer_id=user.id,
                    payee_id=body.payee_id,
                    project_id=body.project_id,
                    session_id=body.session_id,
                    kind=body.kind or "tip",
                    amount=topup_amount,
                    currency=topup_currency,
                    fee_bps=self.settings.direct_application_fee_bps,
                )
                return Order(
                    user_id=user.id,
                    purpose="direct",
                    channel="checkout_session",
                    status="pending",
                    amount=topup_amount,
                    currency=topup_currency,
                    reference=target.reference(),
                )
            if body.purpose == "escrow":
                return await self._escrow_order(session, user, body, idempotency_key)
            return await self._priced_order(session, user, body)

        async def build_with_expiry(session: AsyncSession, user: User) -> Order:
            order = await build(session, user)
            # Fixed once, so every retry sends Stripe the same parameters under the same
            # idempotency key (Stripe refuses a key reused with other parameters).
            order.expires_at = self.now() + timedelta(
                minutes=self.settings.checkout_session_ttl_minutes
            )
            return order

        order, user = await self._find_or_create_order(
            idempotency_key, request_fingerprint, build_with_expiry
        )
        if (
            order.stripe_checkout_session_id is None
            and order.expires_at is not None
            and (order.expires_at - self.now() < timedelta(minutes=31))
        ):
            # Too late to open the session this order was made for (Stripe needs 30
            # minutes ahead): the client retries with a new key.
            raise CheckoutWindowPassed(
                "This payment attempt is too old to resume; start over with a new Idempotency-Key."
            )
        if order.stripe_checkout_session_id is None:
            customer_id = await self._ensure_customer(user)
            session = await self.stripe.create_checkout_session(
                self._checkout_params(order, customer_id, body),
                idempotency_key=(await outgoing_keys(self.sessionmaker)).derive(
                    "checkout_session", order.id
                ),
            )
            expires = session.get("expires_at")
            order = await self._record(
                order.id,
                stripe_checkout_session_id=session["id"],
                checkout_url=session.get("url"),
                expires_at=datetime.fromtimestamp(expires, UTC) if expires else None,
                stripe_payment_intent_id=session.get("payment_intent"),
            )
        return CheckoutSessionRead(
            id=order.stripe_checkout_session_id or "",
            url=order.checkout_url,
            order_id=public_id(ORDER_PREFIX, order.id),
            expires_at=order.expires_at,
        )

    async def _escrow_order(
        self,
        session: AsyncSession,
        user: User,
        body: CheckoutSessionCreate,
        idempotency_key: str,
    ) -> Order:
        """A job offer paid by card: the escrow waits for the payment, which lands in
        escrow directly when Stripe confirms it (``EscrowService.fund_from_payment``)."""
        if body.payee_id is None or body.reference is None:
            raise EscrowCheckoutIncomplete("A job payment needs `payee_id` and `reference`.")
        assert body.amount is not None  # noqa: S101 - checked by create_checkout
        assert body.currency is not None  # noqa: S101
        escrow, _replayed = await escrow_service.EscrowService(session, self.settings).create(
            user,
            EscrowCreate(
                payee_id=body.payee_id,
                amount=body.amount,
                currency=body.currency,
                reference=body.reference,
                project_id=body.project_id,
                session_id=body.session_id,
                description=body.description,
            ),
            idempotency_key=f"checkout:{idempotency_key}",
            funding=EscrowFunding.card,
            capture_method=CaptureMethod(body.capture_method),
        )
        reference: dict[str, Any] = {"escrow_id": escrow.id, "reference": body.reference}
        if escrow.capture_method == CaptureMethod.manual.value:
            reference["capture_method"] = CaptureMethod.manual.value
        return Order(
            user_id=user.id,
            purpose="escrow",
            channel="checkout_session",
            status="pending",
            amount=escrow.hold_amount,
            currency=escrow.currency,
            reference=reference,
        )

    async def _priced_order(
        self, session: AsyncSession, user: User, body: CheckoutSessionCreate
    ) -> Order:
        return await priced_order(
            session,
            user,
            price_key=body.price,
            quantity=body.quantity,
            discount_code=body.discount_code,
            now=self.now(),
        )

    def _checkout_params(
        self, order: Order, customer_id: str, body: CheckoutSessionCreate
    ) -> dict[str, Any]:
        metadata = {
            "order_id": str(order.id),
            "user_id": order.user_id,
            "purpose": order.purpose,
        }
        name = {
            "topup": "Wallet top-up",
            "escrow": f"Job {order.reference.get('reference', '')}".strip(),
        }.get(order.purpose, str(order.reference.get("price")))
        intent_data: dict[str, Any] = {}
        if order.purpose == "direct":
            # A destination charge: Stripe moves the amount to the payee's connected
            # account and takes the application fee back for the platform.
            extra_metadata, intent_data, name = direct_payments.checkout_extras(order)
            metadata.update(extra_metadata)
        if order.reference.get("capture_method") == CaptureMethod.manual.value:
            # Authorize only: the escrow captures it when the payee accepts.
            intent_data["capture_method"] = CaptureMethod.manual.value
        expires_at = order.expires_at or self.now() + timedelta(
            minutes=self.settings.checkout_session_ttl_minutes
        )
        return {
            "mode": "payment",
            "customer": customer_id,
            "client_reference_id": str(order.id),
            "success_url": body.success_url,
            "cancel_url": body.cancel_url,
            "expires_at": int(expires_at.timestamp()),
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": order.currency,
                        "unit_amount": order.amount,
                        "product_data": {"name": name},
                    },
                }
            ],
            "metadata": metadata,
            # Copied onto the PaymentIntent, so payment_intent.* events find the order.
            "payment_intent_data": {"metadata": metadata, **intent_data},
        }

    # -- top-ups (PaymentIntent) ----------------------------------------------------------------
    async def create_topup(self, body: TopupCreate, idempotency_key: str) -> TopupRead:
        """Create (or find again) a PaymentIntent top-up; the client confirms it, or the
        server does with a saved card (on- or off-session)."""
        self._check_topup_amount(body.amount, body.currency)
        request_fingerprint = fingerprint(body.model_dump(mode="json"))
        order_key = idempotency_key
        if body.user_id is not None:
            if not self.principal.has_role("service"):
                raise Forbidden("Topping up another user's wallet needs the service role.")
            # The service's keys never meet the user's own in the user's order keys.
            order_key = (
                "service:"
                + hashlib.sha256(f"{self.principal.sub}\x00{idempotency_key}".encode()).hexdigest()
            )

        async def build(session: AsyncSession, user: User) -> Order:
            card = None
            if body.payment_method is not None or body.off_session:
                card = await saved_card(session, user.id, body.payment_method)
            return Order(
                user_id=user.id,
                purpose="topup",
                channel="payment_intent",
                status="pending",
                amount=body.amount,
                currency=body.currency,
                reference={},
                payment_method_id=card.id if card is not None else None,
                off_session=body.off_session,
            )

        order, user = await self._find_or_create_order(
            order_key, request_fingerprint, build, for_user=body.user_id
        )
        customer_id = await self._ensure_customer(user)
        metadata = {"order_id": str(order.id), "user_id": user.id, "purpose": "topup"}
        params: dict[str, Any] = {
            "amount": order.amount,
            "currency": order.currency,
            "customer": customer_id,
            "metadata": metadata,
        }
        stripe_key = (await outgoing_keys(self.sessionmaker)).derive("payment_intent", order.id)
        if order.payment_method_id is not None:
            return await self.confirm_with_saved_card(order, params, stripe_key)
        if body.payment_method_id:
            params["payment_method"] = body.payment_method_id
        if body.automatic_payment_methods:
            params["automatic_payment_methods"] = {"enabled": True}
        # The same key on every retry returns the same PaymentIntent (and its client
        # secret), so the order never stores the secret. The idempotency layer keeps the
        # whole response (secret included) for its retention period, replayed only to
        # the same user with the same key, as Stripe itself does.
        intent = await self.stripe.create_payment_intent(params, idempotency_key=stripe_key)
        await self._record(order.id, stripe_payment_intent_id=intent["id"])
        return TopupRead(
            payment_intent_id=intent["id"],
            client_secret=intent.get("client_secret"),
            status=intent.get("status", "requires_payment_method"),
            order_id=public_id(ORDER_PREFIX, order.id),
        )

    async def confirm_with_saved_card(
        self, order: Order, params: dict[str, Any], stripe_key: str
    ) -> TopupRead:
        """Create and confirm the PaymentIntent with the order's saved card.

        Stripe's answer decides the order's state at once where it is not money: a card
        refusal fails it (the mapped code, 402), a bank that wants the customer makes it
        ``requires_action``. Money still arrives only with ``payment_intent.succeeded``.
        """
        async with self.sessionmaker() as session:
            card = await session.get(PaymentMethod, order.payment_method_id)
        assert card is not None  # noqa: S101 - a foreign key of the order
        if card.status != "active" and order.stripe_payment_intent_id is None:
            # Removed since the order was written, before anything reached Stripe.
            raise PaymentMethodNotFound("The saved card was removed.")
        params.update(
            payment_method=card.stripe_payment_method_id,
            confirm=True,
            # Cards only need no redirect; 3-D Secure goes through Stripe's SDK.
            automatic_payment_methods={"enabled": True, "allow_redirects": "never"},
        )
        if order.off_session:
            params["off_session"] = True
        result = await self.stripe.create_confirmed_payment_intent(
            params, idempotency_key=stripe_key
        )
        intent = result.intent
        intent_id = str(intent["id"])
        status = str(intent.get("status") or "requires_payment_method")
        code = stable_decline_code(result.decline_code) if result.decline_code else None
        next_action: TopupNextAction | None = None
        if code == "authentication_required" or status == "requires_action":
            async with self.sessionmaker.begin() as session:
                stored = await OrderRepository(session).get(order.id, for_update=True)
                assert stored is not None  # noqa: S101
                confirmation = PayInConfirmation(session, self.stripe, self.settings)
                await confirmation.require_action(stored, payment_intent_id=intent_id)
                action_url = stored.action_url
            stripe_action = intent.get("next_action") or {}
            if code == "authentication_required" or not stripe_action:
                next_action = TopupNextAction(type="finish_on_session", url=action_url)
            else:
                redirect = stripe_action.get("redirect_to_url") or {}
                next_action = TopupNextAction(
                    type=str(stripe_action.get("type") or "use_stripe_sdk"),
                    url=redirect.get("url") or action_url,
                )
            status = "requires_action"
        elif code is not None:
            async with self.sessionmaker.begin() as session:
                stored = await OrderRepository(session).get(order.id, for_update=True)
                assert stored is not None  # noqa: S101
                if stored.stripe_payment_intent_id is None:
                    stored.stripe_payment_intent_id = intent_id
                await PayInConfirmation(session, self.stripe, self.settings).fail(
                    stored, "failed", code
                )
            raise decline_problem(code)
        else:
            await self._record(order.id, stripe_payment_intent_id=intent_id)
        return TopupRead(
            payment_intent_id=intent_id,
            client_secret=intent.get("client_secret"),
            status=status,
            order_id=public_id(ORDER_PREFIX, order.id),
            next_action=next_action,
        )


async def charge_auto_reload(
    sessionmaker: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    settings: Settings,
    order_id: int,
) -> None:
    """The ``auto_reload.charge`` job: charge an auto-reload order's card off-session
    (no transaction open across the call; the key makes a retried job reach the same
    PaymentIntent). A decline fails the order; Stripe's event credits a success."""
    async with sessionmaker() as session:
        order = await session.get(Order, order_id)
        user = await UserRepository(session).get(order.user_id) if order else None
    if order is None or user is None or order.status != "pending":
        return
    customer_id = await ensure_customer(sessionmaker, stripe, user)
    params: dict[str, Any] = {
        "amount": order.amount,
        "currency": order.currency,
        "customer": customer_id,
        "metadata": {
            "order_id": str(order.id),
            "user_id": user.id,
            "purpose": "topup",
            "auto_reload": "true",
        },
    }
    service = PayInService(
        sessionmaker, stripe, settings, Principal(sub=user.id, roles=frozenset(), email=None)
    )
    stripe_key = (await outgoing_keys(sessionmaker)).derive("payment_intent", order.id)
    try:
        await service.confirm_with_saved_card(order, params, stripe_key)
    except CardDeclined:
        log.info("auto-reload declined", extra={"order_id": order.id})
    except PaymentMethodNotFound:
        async with sessionmaker.begin() as session:
            stored = await OrderRepository(session).get(order.id, for_update=True)
            assert stored is not None  # noqa: S101
            await PayInConfirmation(session, stripe, settings).fail(
                stored, "failed", "payment_method_not_found"
            )


async def saved_card(session: AsyncSession, user_id: str, method_id: str | None) -> PaymentMethod:
    """The user's active saved card named ``pmt_…``, else their default card."""
    methods = PaymentMethodRepository(session)
    if method_id is None:
        card = await methods.default_for(user_id)
        if card is None:
            raise NoDefaultPaymentMethod(
                "Save a card first (POST /api/v1/me/payment-methods/setup)."
            )
        return card
    number = parse_public_id(PAYMENT_METHOD_PREFIX, method_id)
    found = await methods.get_for_user(user_id, number) if number else None
    if found is None or found.status != "active":
        raise PaymentMethodNotFound()
    return found


class OrderQueries:
    """Read side of orders for their owner."""

    def __init__(self, session: AsyncSession) -> None:
        self.repository = OrderRepository(session)

    async def list(self, user: User, *, limit: int, starting_after: str | None) -> OrderList:
        rows = await self.repository.page(
            user.id, limit=limit + 1, before_id=parse_cursor(ORDER_PREFIX, starting_after)
        )
        return OrderList(data=[order_read(o) for o in rows[:limit]], has_more=len(rows) > limit)

    async def needing_review(self, *, limit: int, starting_after: str | None) -> OrderList:
        """Paid pay-ins held back because Stripe's amount or currency differs."""
        rows = await self.repository.page_needing_review(
            limit=limit + 1, before_id=parse_cursor(ORDER_PREFIX, starting_after)
        )
        return OrderList(data=[order_read(o) for o in rows[:limit]], has_more=len(rows) > limit)

    async def get(self, user: User, order_id: str) -> OrderRead:
        number = parse_public_id(ORDER_PREFIX, order_id)
        order = await self.repository.get_for_user(user.id, number) if number else None
        if order is None:
            raise OrderNotFound()
        return order_read(order)


class CatalogService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = CatalogRepository(session)

    @staticmethod
    def price_read(price: Price) -> PriceRead:
        return PriceRead(
            lookup_key=price.lookup_key,
            name=price.name,
            unit_amount=price.unit_amount,
            currency=price.currency,
            active=price.active,
            grants_credit=price.grants_credit,
        )

    async def create_price(self, body: PriceCreate) -> PriceRead:
        step = charge_step(body.currency)
        AmountNotInSteps.check(body.unit_amount, body.currency, step, "Prices", field="unit_amount")
        if body.grants_credit is not None:
            # The credit becomes wallet money, which leaves only through Stripe (refunds
            # to the card, transfers): off Stripe's steps it would leave dust no charge
            # refund can return, so it follows the same step as the price itself.
            AmountNotInSteps.check(
                body.grants_credit,
                body.currency,
                step,
                "Wallet credit (`grants_credit`)",
                field="grants_credit",
            )
        if await self.repository.price_by_key(body.lookup_key) is not None:
            raise PriceExists()
        price = Price(**body.model_dump(), active=True)
        self.session.add(price)
        await self.session.flush()
        return self.price_read(price)

    async def set_price_active(self, lookup_key: str, active: bool) -> PriceRead:
        price = await self.repository.price_by_key(lookup_key)
        if price is None:
            raise PriceNotFound(status=404)
        price.active = active
        await self.session.flush()
        return self.price_read(price)

    async def list_prices(self, *, active_only: bool) -> list[PriceRead]:
        return [
            self.price_read(p)
            for p in await self.repository.prices()
            if p.active or not active_only
        ]

    async def create_discount(self, body: DiscountCodeCreate) -> DiscountCodeRead:
        if (body.percent_off_bps is None) == (body.amount_off is None):
            raise DiscountCodeInvalid("Give exactly one of percent_off_bps or amount_off.")
        if (body.amount_off is None) != (body.currency is None):
            raise DiscountCodeInvalid("amount_off needs a currency (and only it does).")
        if body.amount_off is not None and body.currency is not None:
            AmountNotInSteps.check(
                body.amount_off, body.currency, charge_step(body.currency), "Discounts"
            )
        if await self.repository.discount_by_code(body.code) is not None:
            raise DiscountCodeExists()
        discount = DiscountCode(**body.model_dump(), active=True, redemptions=0)
        self.session.add(discount)
        await self.session.flush()
        return DiscountCodeRead.model_validate(discount, from_attributes=True)


class PayInConfirmation:
    """Applies Stripe's verdict on a pay-in: the only code that credits a wallet."""

    def __init__(self, session: AsyncSession, stripe: StripeGateway, settings: Settings) -> None:
        self.session = session
        self.stripe = stripe
        self.settings = settings
        self.orders = OrderRepository(session)
        self.ledger = ledger_service.LedgerService(session)

    async def find(
        self,
        metadata: dict[str, Any] | None,
        *,
        checkout_session_id: str | None = None,
        payment_intent_id: str | None = None,
    ) -> Order | None:
        raw = (metadata or {}).get("order_id")
        order_id = int(raw) if isinstance(raw, str) and (raw.isascii() and raw.isdigit()) else None
        return await self.orders.by_stripe_ids(
            order_id=order_id,
            checkout_session_id=checkout_session_id,
            payment_intent_id=payment_intent_id,
        )

    async def succeed(
        self, order: Order, *, payment_intent_id: str, amount: int, currency: str
    ) -> None:
        """Credit the pay-in once. The cause key is the PaymentIntent id, so the
        Checkout Session event and the PaymentIntent event of one payment can never
        both credit."""
        if order.stripe_payment_intent_id is None:
            order.stripe_payment_intent_id = payment_intent_id
        if order.status == "needs_review":
            return  # already held for an operator; a redelivery changes nothing
        partial_capture = (
            order.purpose == "escrow"
            and order.reference.get("capture_method") == CaptureMethod.manual.value
            and currency == order.currency
            and 0 < amount < order.amount
        )
        if partial_capture and order.status in ("pending", "requires_action"):
            # An authorization captured in part: the order is what was paid; Stripe
            # released the rest at the card.
            order.amount = amount
        mismatch = (
            "currency_mismatch"
            if currency != order.currency
            else "amount_mismatch"
            if amount != order.amount
            else None
        )
        if mismatch is not None:
            # Credit what was ordered or nothing: never what the event says. A paid
            # amount that differs (a tampered or misrouted session, a Stripe-side
            # change) waits for an operator; reconciliation shows the Stripe charge
            # with no ledger entry.
            order.status = "needs_review"
            order.review_reason = mismatch
            order.paid_amount = amount
            order.paid_currency = currency[:3]
            order.updated_at = utcnow()
            PAYINS_NEEDING_REVIEW.labels(mismatch).inc()
            log.warning(
                "pay-in differs from its order; not credited",
                extra={"order_id": order.id, "reason": mismatch},
            )
            return
        if order.purpose == "direct":
            # The money is on the payee's connected account: the ledger gets only the
            # platform's fee, the payee's take goes to the reporting tables.
            await direct_payments.record_paid(
                self.session,
                order,
                payment_intent_id=payment_intent_id,
                amount=amount,
                currency=currency,
            )
        elif order.purpose == "escrow":
            # Straight into the job's escrow (never through available), once per
            # PaymentIntent; a job that cannot take it credits the wallet instead.
            await escrow_service.EscrowService(self.session, self.settings).fund_from_payment(
                escrow_id=int(order.reference["escrow_id"]),
                payment_intent_id=payment_intent_id,
                amount=amount,
                currency=currency,
            )
        else:
            await self._credit(order, payment_intent_id=payment_intent_id, amount=amount)
            if order.purpose == "order":
                await grant_credit(self.ledger, order)
        if order.status in ("pending", "requires_action", "failed", "expired"):
            # A late success after an expiry/failure still means the money arrived.
            order.status = "succeeded"
            order.failure_code = None
            order.succeeded_at = utcnow()
            order.updated_at = utcnow()
            PAYINS.labels(order.purpose, "succeeded").inc()
            await emit(
                self.session,
                EventType.topup_succeeded if order.purpose == "topup" else EventType.order_paid,
                order_read(order),
                change_key=f"order:{order.id}:paid",
                user_ids=[order.user_id],
            )
        order.updated_at = utcnow()

    async def _credit(self, order: Order, *, payment_intent_id: str, amount: int) -> None:
        """A wallet top-up credits the user's available; a catalog order is revenue."""
        currency = order.currency
        destination = (
            ledger_service.AccountRef.user(order.user_id, AccountKind.available, currency)
            if order.purpose == "topup"
            else ledger_service.AccountRef.platform(AccountKind.sales, currency)
        )
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="topup" if order.purpose == "topup" else "order_payment",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:payment:{payment_intent_id}",
                description=f"Payment {public_id(ORDER_PREFIX, order.id)}",
                metadata={"order_id": order.id, "payment_intent": payment_intent_id},
                postings=[
                    ledger_service.PostingSpec(destination, amount),
                    ledger_service.PostingSpec(
                        ledger_service.AccountRef.platform(AccountKind.stripe_balance, currency),
                        -amount,
                    ),
                ],
            )
        )

    async def record_fee(self, order: Order, charge_id: str) -> None:
        """Record Stripe's processing fee from the charge's balance transaction."""
        charge = await self.stripe.retrieve_charge_with_fee(charge_id)
        transaction = charge.get("balance_transaction")
        if not isinstance(transaction, dict) or not transaction.get("fee"):
            return  # not settled yet or no fee; reconciliation catches it later
        fee = int(transaction["fee"])
        currency = str(transaction.get("currency", order.currency))
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="processing_fee",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:fee:{transaction['id']}",
                description=f"Stripe fee for {public_id(ORDER_PREFIX, order.id)}",
                metadata={"order_id": order.id, "charge": charge_id},
                postings=[
                    ledger_service.PostingSpec(
                        ledger_service.AccountRef.platform(AccountKind.stripe_balance, currency),
                        fee,
                    ),
                    ledger_service.PostingSpec(
                        ledger_service.AccountRef.platform(AccountKind.processing_fees, currency),
                        -fee,
                    ),
                ],
            )
        )
        order.processing_fee_amount = fee

    async def fail(self, order: Order, status: str, code: str) -> None:
        """Mark a pay-in failed or expired, unless Stripe already confirmed it."""
        if order.status not in ("pending", "requires_action"):
            return  # succeeded stays succeeded; a second failure changes nothing
        order.status = status
        order.failure_code = code[:64]
        order.updated_at = utcnow()
        PAYINS.labels(order.purpose, status).inc()
        if order.purpose == "topup":
            await emit(
                self.session,
                EventType.topup_failed,
                order_read(order),
                change_key=f"order:{order.id}:failed",
                user_ids=[order.user_id],
            )

    def action_url(self, order: Order, payment_intent_id: str) -> str | None:
        """Where the customer finishes a payment on-session: the frontend's page
        (``PAYMENTS_FINISH_PAYMENT_URL``), else the sandbox's payment page."""
        template = self.settings.finish_payment_url
        if template:
            return template.format(
                order_id=public_id(ORDER_PREFIX, order.id), payment_intent_id=payment_intent_id
            )
        if self.settings.sandbox:
            base = self.settings.public_base_url.rstrip("/")
            return f"{base}/sandbox/payment_intents/{payment_intent_id}"
        return None

    async def require_action(self, order: Order, *, payment_intent_id: str) -> None:
        """The bank wants the customer (3-D Secure): the top-up waits for them, with a
        link to finish it on-session, and the platform hears of it once."""
        if order.stripe_payment_intent_id is None:
            order.stripe_payment_intent_id = payment_intent_id
        if order.status != "pending":
            return  # already waiting, or decided
        order.status = "requires_action"
        order.action_url = self.action_url(order, payment_intent_id)
        order.updated_at = utcnow()
        if order.purpose == "topup":
            await emit(
                self.session,
                EventType.topup_requires_action,
                order_read(order),
                change_key=f"order:{order.id}:requires_action",
                user_ids=[order.user_id],
            )
