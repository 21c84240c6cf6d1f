"""Pay-ins: Checkout Sessions and PaymentIntent top-ups, for any registered purpose.

What an order is for (and what its payment means) is its purpose's business
(``orders/purposes.py``, wired in ``payments_api/payins.py``); Stripe's verdict is applied
by ``orders/confirmation.py``.

A pay-in never holds a database transaction open across a Stripe call:
1. a short transaction provisions the user and writes the ``pending`` order (found
   again by the client's Idempotency-Key on a retry);
2. Stripe is called with keys derived from our ids (``customer:{user_id}``,
   ``checkout_session:{order_id}``, ``payment_intent:{order_id}``), so a retry after a
   timeout reaches the same Stripe object;
3. a second short transaction records Stripe's ids on the order.
Steps 2 and 3 are the Stripe operation skeleton's ``call_and_settle``
(``kit/stripe_operation.py``); the client's retry, finding the same order by its
Idempotency-Key, is the recovery.
The wallet is credited only by Stripe's events (``PayInConfirmation``), never here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.idempotency import add_once, fingerprint, same_request
from payments_api.kit.pagination import parse_public_id, public_id
from payments_api.kit.stripe_operation import call_and_settle
from payments_api.orders.confirmation import PayInConfirmation
from payments_api.orders.errors import (
    KEY_USED_FOR_ANOTHER_PAYMENT,
    CheckoutWindowPassed,
    RedirectUrlNotAllowed,
)
from payments_api.orders.models import Order
from payments_api.orders.purposes import PURPOSES, CheckoutRequest, check_chosen_amount
from payments_api.orders.reads import ORDER_PREFIX
from payments_api.orders.repository import OrderRepository
from payments_api.orders.schemas import (
    CheckoutSessionCreate,
    CheckoutSessionRead,
    TopupCreate,
    TopupNextAction,
    TopupRead,
)
from payments_api.payment_methods.declines import decline_problem, stable_decline_code
from payments_api.payment_methods.errors import NoDefaultPaymentMethod, PaymentMethodNotFound
from payments_api.payment_methods.models import PaymentMethod
from payments_api.payment_methods.repository import PaymentMethodRepository
from payments_api.payment_methods.service import PAYMENT_METHOD_PREFIX
from payments_api.problems import Forbidden
from payments_api.stripe.objects import CheckoutSession, PaymentIntent
from payments_api.stripe.payment_methods import ConfirmedIntent
from payments_api.users.caller_flow import CallerStripeFlow
from payments_api.users.customers import ensure_customer
from payments_api.users.errors import UserNotFound
from payments_api.users.models import User
from payments_api.users.repository import UserRepository

AnswerT = TypeVar("AnswerT")
ResultT = TypeVar("ResultT")


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


class PayInService(CallerStripeFlow):
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
            existing = same_request(
                await orders.by_idempotency_key(user.id, idempotency_key),
                request_fingerprint,
                KEY_USED_FOR_ANOTHER_PAYMENT,
            )
            if existing is not None:
                return existing, user
            order: Order = await build(session, user)
            order.idempotency_key = idempotency_key
            order.request_fingerprint = request_fingerprint
            # A concurrent twin with the same key won: use its order.
            twin = await add_once(
                session, order, lambda: orders.by_idempotency_key(user.id, idempotency_key)
            )
            return twin, user

    async def _ensure_customer(self, user: User) -> str:
        return await ensure_customer(self.sessionmaker, self.stripe, user)

    async def _record(self, session: AsyncSession, order_id: int, **values: Any) -> Order:
        """Step 3: Stripe's ids on the order, in the transaction after the call."""
        order = await OrderRepository(session).get(order_id, for_update=True)
        assert order is not None  # noqa: S101 - written in step 1
        for name, value in values.items():
            if getattr(order, name) is None:  # never overwrite what an event recorded
                setattr(order, name, value)
        order.updated_at = self.now()
        return order

    async def _create_at_stripe(
        self,
        operation: str,
        order_id: int,
        create: Callable[..., Awaitable[AnswerT]],
        params: dict[str, Any],
        settle: Callable[[AsyncSession, AnswerT], Awaitable[ResultT]],
    ) -> ResultT:
        """Steps 2 and 3: ``create`` the order's Stripe object from ``params`` under the
        order's key for ``operation`` (a retry reaches the same object), then ``settle``
        Stripe's answer in a new short transaction."""
        return await call_and_settle(
            self.sessionmaker,
            operation,
            order_id,
            lambda key: create(params, idempotency_key=key),
            settle,
        )

    # -- checkout --------------------------------------------------------------------------
    async def create_checkout(
        self, body: CheckoutSessionCreate, idempotency_key: str
    ) -> CheckoutSessionRead:
        """Create (or find again) the order and its Stripe Checkout Session."""
        self._check_redirects(body.success_url, body.cancel_url)
        purpose = PURPOSES.get(body.purpose)
        purpose.check_checkout(body, self.principal, self.settings)
        request_fingerprint = fingerprint(body.model_dump(mode="json"))

        async def build_with_expiry(session: AsyncSession, user: User) -> Order:
            order = await purpose.build_checkout_order(
                CheckoutRequest(
                    session=session,
                    user=user,
                    body=body,
                    idempotency_key=idempotency_key,
                    settings=self.settings,
                    now=self.now(),
                )
            )
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
            params = self._checkout_params(order, await self._ensure_customer(user), body)

            async def record(session: AsyncSession, checkout: CheckoutSession) -> Order:
                expires = checkout.expires_at
                return await self._record(
                    session,
                    order.id,
                    stripe_checkout_session_id=checkout.id,
                    checkout_url=checkout.url,
                    expires_at=datetime.fromtimestamp(expires, UTC) if expires else None,
                    stripe_payment_intent_id=checkout.payment_intent,
                )

            order = await self._create_at_stripe(
                "checkout_session", order.id, self.stripe.create_checkout_session, params, record
            )
        return CheckoutSessionRead(
            id=order.stripe_checkout_session_id or "",
            url=order.checkout_url,
            order_id=public_id(ORDER_PREFIX, order.id),
            expires_at=order.expires_at,
        )

    def _checkout_params(
        self, order: Order, customer_id: str, body: CheckoutSessionCreate
    ) -> dict[str, Any]:
        metadata = {
            "order_id": str(order.id),
            "user_id": order.user_id,
            "purpose": order.purpose,
        }
        line = PURPOSES.get(order.purpose).checkout_line(order)
        metadata.update(line.metadata)
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
                        "product_data": {"name": line.name},
                    },
                }
            ],
            "metadata": metadata,
            # Copied onto the PaymentIntent, so payment_intent.* events find the order.
            "payment_intent_data": {"metadata": metadata, **line.intent_data},
        }

    # -- top-ups (PaymentIntent) ----------------------------------------------------------------
    async def create_topup(self, body: TopupCreate, idempotency_key: str) -> TopupRead:
        """Create (or find again) a PaymentIntent top-up; the client confirms it, or the
        server does with a saved card (on- or off-session)."""
        check_chosen_amount(self.settings, body.amount, body.currency)
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
        if order.payment_method_id is not None:
            return await self.confirm_with_saved_card(order, params)
        if body.payment_method_id:
            params["payment_method"] = body.payment_method_id
        if body.automatic_payment_methods:
            params["automatic_payment_methods"] = {"enabled": True}
        # The same key on every retry returns the same PaymentIntent (and its client
        # secret), so the order never stores the secret. The idempotency layer keeps the
        # whole response (secret included) for its retention period, replayed only to
        # the same user with the same key, as Stripe itself does.

        async def record(session: AsyncSession, intent: PaymentIntent) -> PaymentIntent:
            await self._record(session, order.id, stripe_payment_intent_id=intent.id)
            return intent

        intent = await self._create_at_stripe(
            "payment_intent", order.id, self.stripe.create_payment_intent, params, record
        )
        return TopupRead(
            payment_intent_id=intent.id,
            client_secret=intent.client_secret,
            status=intent.status,
            order_id=public_id(ORDER_PREFIX, order.id),
        )

    async def confirm_with_saved_card(self, order: Order, params: dict[str, Any]) -> TopupRead:
        """Create and confirm the PaymentIntent with the order's saved card (key
        ``payment_intent:{order_id}``).

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
        result = await self._create_at_stripe(
            "payment_intent",
            order.id,
            self.stripe.create_confirmed_payment_intent,
            params,
            lambda session, answer: self._settle_confirmation(session, order.id, answer),
        )
        if isinstance(result, str):
            raise decline_problem(result)  # after the order's failure is committed
        return result

    async def _settle_confirmation(
        self, session: AsyncSession, order_id: int, result: ConfirmedIntent
    ) -> TopupRead | str:
        """What a saved card's confirmation means for the order; a decline code when it
        was refused (raised once this transaction has committed)."""
        intent = result.intent
        intent_id = intent.id
        status = intent.status or "requires_payment_method"
        code = stable_decline_code(result.decline_code) if result.decline_code else None
        next_action: TopupNextAction | None = None
        if code == "authentication_required" or status == "requires_action":
            stored = await OrderRepository(session).get(order_id, for_update=True)
            assert stored is not None  # noqa: S101
            confirmation = PayInConfirmation(session, self.stripe, self.settings)
            await confirmation.require_action(stored, payment_intent_id=intent_id)
            action_url = stored.action_url
            stripe_action = intent.next_action
            if code == "authentication_required" or stripe_action is None:
                next_action = TopupNextAction(type="finish_on_session", url=action_url)
            else:
                redirect = stripe_action.redirect_to_url
                next_action = TopupNextAction(
                    type=stripe_action.type or "use_stripe_sdk",
                    url=(redirect.url if redirect else None) or action_url,
                )
            status = "requires_action"
        elif code is not None:
            stored = await OrderRepository(session).get(order_id, for_update=True)
            assert stored is not None  # noqa: S101
            if stored.stripe_payment_intent_id is None:
                stored.stripe_payment_intent_id = intent_id
            await PayInConfirmation(session, self.stripe, self.settings).fail(
                stored, "failed", code
            )
            return code
        else:
            await self._record(session, order_id, stripe_payment_intent_id=intent_id)
        return TopupRead(
            payment_intent_id=intent_id,
            client_secret=intent.client_secret,
            status=status,
            order_id=public_id(ORDER_PREFIX, order_id),
            next_action=next_action,
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
