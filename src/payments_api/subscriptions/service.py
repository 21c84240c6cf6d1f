"""Subscriptions: the subscriber's own calls (subscribe, cancel, resume, pause, change).

Stripe is the source of truth. Our calls (create, cancel, resume, change) follow the
pay-in pattern: a short transaction writes or locks our row, Stripe is called with a key
derived from it (``subscription:{id}``, ``subscription_update:{id}-{request}``) and no
transaction open, and a second short transaction records Stripe's answer. Webhooks then
keep the row current.

Beside it: ``state.py`` applies Stripe's subscription objects to our rows (newest state
wins), ``stripe_events.py`` handles Stripe's subscription and invoice events, and
``views.py`` holds the read models and the read-only queries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.idempotency import IdempotencyKeyReused, fingerprint
from payments_api.kit.lookups import by_public_id
from payments_api.kit.stripe_operation import call_and_settle
from payments_api.stripe.billing_objects import ClientSecret, Invoice
from payments_api.stripe.billing_objects import Subscription as StripeSubscription
from payments_api.subscriptions.errors import (
    PlanChangeInvalid,
    PlanNotFound,
    SubscriptionExists,
    SubscriptionNotActive,
    SubscriptionNotFound,
    SubscriptionNotPaused,
    SubscriptionNotResumable,
    SubscriptionPauseInvalid,
)
from payments_api.subscriptions.first_invoice import (
    open_first_invoice,
    pay_first_invoice,
    saved_card,
)
from payments_api.subscriptions.models import Subscription
from payments_api.subscriptions.plans import plan_read
from payments_api.subscriptions.repository import PlanRepository, SubscriptionRepository
from payments_api.subscriptions.schemas import (
    PlanRead,
    PreviewLine,
    ProrationPreview,
    SubscriptionCancel,
    SubscriptionChange,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPause,
    SubscriptionRead,
)
from payments_api.subscriptions.state import TERMINAL, SubscriptionState
from payments_api.subscriptions.views import SUBSCRIPTION_PREFIX
from payments_api.subscriptions.views import (
    SubscriptionViews as SubscriptionViews,  # re-exported: refunds/invoices.py imports it here
)
from payments_api.users.caller_flow import CallerStripeFlow
from payments_api.users.customers import ensure_customer
from payments_api.users.models import User
from payments_api.users.repository import UserRepository

CHANGEABLE = frozenset({"trialing", "active"})

Stored = tuple[StripeSubscription, SubscriptionRead]
"""Stripe's subscription as recorded, and our read of the row after it."""


class SubscriptionService(CallerStripeFlow):
    """The subscriber's own calls; never a transaction open across a Stripe call."""

    # -- subscribe -----------------------------------------------------------------------------
    async def create(self, body: SubscriptionCreate, idempotency_key: str) -> SubscriptionCreated:
        request_fingerprint = fingerprint(body.model_dump(mode="json"))
        row, user, plan = await self._find_or_create(body, idempotency_key, request_fingerprint)
        if row.stripe_subscription_id is not None:
            # A retry: Stripe's current object (its client secret) without a second one.
            obj = await self.stripe.retrieve_subscription(row.stripe_subscription_id)
            read = await self._store(row, obj, first=False)
        else:
            customer = await ensure_customer(self.sessionmaker, self.stripe, user)
            params: dict[str, Any] = {
                "customer": customer,
                "items": [{"price": row.stripe_price_id}],
                "payment_behavior": "default_incomplete",
                "payment_settings": {"save_default_payment_method": "on_subscription"},
                "metadata": {"subscription_id": str(row.id), "user_id": row.user_id},
            }
            if body.payment_method:
                params["default_payment_method"] = body.payment_method
            if body.trial and plan.trial_period_days:
                params["trial_from_plan"] = True
            # Recorded before paying, so a failed payment call leaves Stripe's id for the
            # retry to read back instead of creating again.
            obj, read = await call_and_settle(
                self.sessionmaker,
                "subscription",
                row.id,
                lambda key: self.stripe.create_subscription(params, idempotency_key=key),
                self._recorder(row, first=True),
            )
        paid = await self._pay_first_invoice(row, user, obj)
        if paid is not None:
            obj, read = paid
        secret, kind = _client_secret(obj)
        return SubscriptionCreated(
            **read.model_dump(), client_secret=secret, client_secret_type=kind
        )

    def _recorder(
        self, row: Subscription, *, first: bool
    ) -> Callable[[AsyncSession, StripeSubscription], Awaitable[Stored]]:
        """Records Stripe's subscription ``obj`` on our row, in the settle transaction."""

        async def record(session: AsyncSession, obj: StripeSubscription) -> Stored:
            locked = await SubscriptionRepository(session).get(row.id, for_update=True)
            assert locked is not None  # noqa: S101 - written above
            if locked.stripe_state_at is None or not first:
                # Nothing from webhooks yet: the creation's own snapshot, as of its time;
                # a read back or the state after paying: applied unless webhooks told
                # newer (SubscriptionState orders them).
                state_at = obj.created or int(self.now().timestamp())
                await SubscriptionState(session, self.settings).apply(locked, obj, state_at)
            return obj, await SubscriptionViews(session, self.settings).one(locked)

        return record

    async def _store(
        self, row: Subscription, obj: StripeSubscription, *, first: bool
    ) -> SubscriptionRead:
        async with self.sessionmaker.begin() as session:
            _, read = await self._recorder(row, first=first)(session, obj)
            return read

    async def _pay_first_invoice(
        self, row: Subscription, user: User, obj: StripeSubscription
    ) -> Stored | None:
        """Pays the first invoice when it waits for a payment; Stripe's subscription
        after it, recorded, or None when nothing changed."""
        if open_first_invoice(obj) is None:
            return None
        payment_method = row.payment_method
        if payment_method is None:
            async with self.sessionmaker() as session:
                payment_method = await saved_card(session, user.id)
        if payment_method is None:
            return None
        record = self._recorder(row, first=False)

        async def record_if_paid(session: AsyncSession, paid: StripeSubscription) -> Stored | None:
            return None if paid is obj else await record(session, paid)

        return await call_and_settle(
            self.sessionmaker,
            "subscription_first_invoice",
            row.id,
            lambda key: pay_first_invoice(
                self.stripe, obj, payment_method=payment_method, idempotency_key=key
            ),
            record_if_paid,
        )

    async def _find_or_create(
        self, body: SubscriptionCreate, idempotency_key: str, request_fingerprint: str
    ) -> tuple[Subscription, User, PlanRead]:
        async with self.sessionmaker.begin() as session:
            user = await UserRepository(session).upsert_from_principal(self.principal)
            repository = SubscriptionRepository(session)
            existing = await repository.by_idempotency_key(user.id, idempotency_key)
            if existing is None:
                await repository.lock_user(user.id)
                existing = await repository.by_idempotency_key(user.id, idempotency_key)
            found = await PlanRepository(session).plan(body.price)
            if existing is not None and existing.request_fingerprint != request_fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used for a different subscription."
                )
            if existing is not None and found is not None:
                return existing, user, plan_read(*found)  # a retry: archived since is fine
            if found is None or not (found[0].active and found[1].active):
                raise PlanNotFound(f"No active plan has the price {body.price!r}.")
            price, product = found
            if self.settings.subscriptions_one_per_family and await repository.live_in_family(
                user.id, product.family, now=self.now()
            ):
                raise SubscriptionExists(
                    "You already have a subscription to this plan family; change its plan instead.",
                    family=product.family,
                )
            row = Subscription(
                user_id=user.id,
                stripe_price_id=price.stripe_price_id,
                family=product.family,
                status="incomplete",
                idempotency_key=idempotency_key,
                request_fingerprint=request_fingerprint,
                payment_method=body.payment_method,
                cancel_at_period_end=False,
            )
            try:
                async with session.begin_nested():
                    await repository.add(row)
            except IntegrityError:
                raise IdempotencyKeyReused() from None
            return row, user, plan_read(price, product)

    # -- manage ---------------------------------------------------------------------------------
    async def _mine(self, subscription_id: str) -> Subscription:
        async with self.sessionmaker.begin() as session:
            repository = SubscriptionRepository(session)
            return await by_public_id(
                SUBSCRIPTION_PREFIX,
                subscription_id,
                lambda number: repository.get_for_user(self.principal.sub, number),
                SubscriptionNotFound,
            )

    async def _update(
        self,
        operation: str,
        row: Subscription,
        idempotency_key: str,
        call: Callable[[str], Awaitable[StripeSubscription]],
    ) -> SubscriptionRead:
        """One change the subscriber asked for: ``call`` Stripe with the key of this row
        and request (``<operation>:{id}-{request}``), then record its answer."""

        async def record(session: AsyncSession, obj: StripeSubscription) -> SubscriptionRead:
            locked = await SubscriptionRepository(session).get(row.id, for_update=True)
            assert locked is not None  # noqa: S101
            await SubscriptionState(session, self.settings).apply(
                locked, obj, int(self.now().timestamp())
            )
            return await SubscriptionViews(session, self.settings).one(locked)

        request = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        return await call_and_settle(
            self.sessionmaker, operation, f"{row.id}-{request}", call, record
        )

    async def _change(
        self, row: Subscription, params: dict[str, Any], idempotency_key: str
    ) -> SubscriptionRead:
        """Update the subscription at Stripe with ``params`` and record the answer."""
        stripe_subscription_id = row.stripe_subscription_id
        assert stripe_subscription_id is not None  # noqa: S101 - the callers check
        return await self._update(
            "subscription_update",
            row,
            idempotency_key,
            lambda key: self.stripe.update_subscription(
                stripe_subscription_id, params, idempotency_key=key
            ),
        )

    async def cancel(
        self, subscription_id: str, body: SubscriptionCancel, idempotency_key: str
    ) -> SubscriptionRead:
        row = await self._mine(subscription_id)
        if row.stripe_subscription_id is None or row.status in TERMINAL:
            raise SubscriptionNotActive(f"A {row.status} subscription cannot be canceled.")
        if body.at_period_end:
            return await self._change(row, {"cancel_at_period_end": True}, idempotency_key)
        stripe_subscription_id = row.stripe_subscription_id
        return await self._update(
            "subscription_cancel",
            row,
            idempotency_key,
            lambda key: self.stripe.cancel_subscription(
                stripe_subscription_id, idempotency_key=key
            ),
        )

    async def resume(self, subscription_id: str, idempotency_key: str) -> SubscriptionRead:
        row = await self._mine(subscription_id)
        if (
            row.stripe_subscription_id is None
            or not row.cancel_at_period_end
            or row.status not in ("trialing", "active", "past_due")
            or (row.current_period_end is not None and row.current_period_end <= self.now())
        ):
            raise SubscriptionNotResumable()
        return await self._change(row, {"cancel_at_period_end": False}, idempotency_key)

    async def pause(
        self, subscription_id: str, body: SubscriptionPause, idempotency_key: str
    ) -> SubscriptionRead:
        """Pause payment collection (Stripe's ``pause_collection``); the status stays
        what it is at Stripe, ``entitled`` is false until collection resumes."""
        row = await self._mine(subscription_id)
        if row.stripe_subscription_id is None or row.status not in (
            "trialing",
            "active",
            "past_due",
        ):
            raise SubscriptionNotActive(f"A {row.status} subscription cannot be paused.")
        pause: dict[str, Any] = {"behavior": body.behavior}
        if body.resumes_at is not None:
            if body.resumes_at <= self.now():
                raise SubscriptionPauseInvalid("resumes_at must be in the future.")
            pause["resumes_at"] = int(body.resumes_at.timestamp())
        return await self._change(row, {"pause_collection": pause}, idempotency_key)

    async def unpause(self, subscription_id: str, idempotency_key: str) -> SubscriptionRead:
        """Resume payment collection (``pause_collection`` unset)."""
        row = await self._mine(subscription_id)
        if row.stripe_subscription_id is None or row.pause_behavior is None:
            raise SubscriptionNotPaused()
        return await self._change(row, {"pause_collection": ""}, idempotency_key)

    async def _changeable(self, row: Subscription, price_id: str) -> None:
        if row.stripe_subscription_id is None or row.stripe_item_id is None:
            raise SubscriptionNotActive("The subscription is not set up at Stripe yet.")
        if row.status not in CHANGEABLE or row.cancel_at_period_end:
            raise SubscriptionNotActive(
                "Only an active or trialing subscription that is not ending can change plan."
            )
        async with self.sessionmaker.begin() as session:
            plans = PlanRepository(session)
            new, current = await plans.plan(price_id), await plans.plan(row.stripe_price_id)
        if new is None or not (new[0].active and new[1].active):
            raise PlanNotFound(f"No active plan has the price {price_id!r}.")
        if price_id == row.stripe_price_id:
            raise PlanChangeInvalid("That is the subscription's current price.")
        if current is not None and (
            new[0].currency != current[0].currency or new[1].family != current[1].family
        ):
            raise PlanChangeInvalid("The new price must be in the same currency and family.")

    async def preview(self, subscription_id: str, price_id: str) -> ProrationPreview:
        row = await self._mine(subscription_id)
        await self._changeable(row, price_id)
        proration_date = int(self.now().timestamp())
        invoice = await self.stripe.preview_invoice(
            {
                "subscription": row.stripe_subscription_id,
                "subscription_details": {
                    "items": [{"id": row.stripe_item_id, "price": price_id}],
                    "proration_behavior": "create_prorations",
                    "proration_date": proration_date,
                },
            }
        )
        return ProrationPreview(
            price=price_id,
            amount_due=invoice.amount_due,
            currency=invoice.currency or "",
            proration_date=proration_date,
            lines=[
                PreviewLine(
                    description=line.description, amount=line.amount, proration=line.proration
                )
                for line in invoice.lines.data
            ],
        )

    async def change(
        self, subscription_id: str, body: SubscriptionChange, idempotency_key: str
    ) -> SubscriptionRead:
        row = await self._mine(subscription_id)
        await self._changeable(row, body.price)
        params: dict[str, Any] = {
            "items": [{"id": row.stripe_item_id, "price": body.price}],
            "proration_behavior": "create_prorations",
        }
        if body.proration_date is not None:
            params["proration_date"] = body.proration_date
        return await self._change(row, params, idempotency_key)


def _client_secret(obj: StripeSubscription) -> tuple[str | None, Any]:
    """The secret the customer confirms when they must act, and what it belongs to."""
    invoice = obj.latest_invoice
    if obj.status == "incomplete" and isinstance(invoice, Invoice):
        secret = invoice.confirmation_secret
        if secret is not None and secret.client_secret:
            return secret.client_secret, "payment_intent"
        intent = invoice.payment_intent  # older API versions
        if isinstance(intent, ClientSecret) and intent.client_secret:
            return intent.client_secret, "payment_intent"
    setup = obj.pending_setup_intent
    if isinstance(setup, ClientSecret) and setup.client_secret:
        return setup.client_secret, "setup_intent"
    return None, None
