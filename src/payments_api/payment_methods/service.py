"""Saved cards: SetupIntents, the card record Stripe's event confirms, default, detach.

Like pay-ins (the Stripe operation skeleton's ``call_and_settle``), no database
transaction stays open across a Stripe call: the setup row is committed first and the
SetupIntent's outgoing key is derived from it (``setup_intent:{setup_id}``); a detach
marks the card detached first (it can no longer be charged) and then detaches it at
Stripe (``payment_method_detach:{id}``).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.auth import Principal
from payments_api.events.owner_events import tell_owner
from payments_api.events.types import EventType
from payments_api.kit.amounts import AmountNotInSteps, check_limits
from payments_api.kit.clock import utcnow
from payments_api.kit.lookups import by_public_id
from payments_api.kit.pagination import public_id
from payments_api.kit.reads import read_of
from payments_api.kit.stripe_operation import call_and_settle, call_with_key
from payments_api.money import charge_step
from payments_api.payment_methods.errors import PaymentMethodDetached, PaymentMethodNotFound
from payments_api.payment_methods.models import AutoReload, PaymentMethod, PaymentMethodSetup
from payments_api.payment_methods.repository import PaymentMethodRepository
from payments_api.payment_methods.schemas import (
    AutoReloadList,
    AutoReloadRead,
    AutoReloadSet,
    PaymentMethodList,
    PaymentMethodRead,
    SetupIntentRead,
)
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import PaymentMethod as StripePaymentMethod
from payments_api.stripe.objects import SetupIntent
from payments_api.users.customers import ensure_customer
from payments_api.users.models import User
from payments_api.users.repository import UserRepository

log = logging.getLogger(__name__)

PAYMENT_METHOD_PREFIX = "pmt"


def payment_method_read(method: PaymentMethod) -> PaymentMethodRead:
    return read_of(
        PaymentMethodRead,
        method,
        id=public_id(PAYMENT_METHOD_PREFIX, method.id),
        status="active" if method.status == "active" else "detached",
    )


def auto_reload_read(row: AutoReload) -> AutoReloadRead:
    return read_of(AutoReloadRead, row)


async def emit_card_event(session: AsyncSession, event: EventType, method: PaymentMethod) -> None:
    """Tell the card's owner it was saved or detached (once per card and event type)."""
    await tell_owner(session, event, payment_method_read(method), method, kind="payment_method")


class PaymentMethodService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeGateway,
        principal: Principal,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe
        self.principal = principal

    async def setup(self, idempotency_key: str) -> SetupIntentRead:
        """A SetupIntent (``usage=off_session``) for the caller's Stripe Customer."""
        async with self.sessionmaker.begin() as session:
            user = await UserRepository(session).upsert_from_principal(self.principal)
            methods = PaymentMethodRepository(session)
            setup = await methods.setup_by_key(user.id, idempotency_key)
            if setup is None:
                setup = PaymentMethodSetup(user_id=user.id, idempotency_key=idempotency_key)
                try:
                    async with session.begin_nested():
                        session.add(setup)
                        await session.flush()
                except IntegrityError:
                    # A concurrent twin with the same key won: use its row.
                    setup = await methods.setup_by_key(user.id, idempotency_key)
                    assert setup is not None  # noqa: S101 - the conflicting row exists
        customer = await ensure_customer(self.sessionmaker, self.stripe, user)
        params = {
            "customer": customer,
            "usage": "off_session",
            "automatic_payment_methods": {"enabled": True},
            "metadata": {"user_id": user.id, "setup_id": str(setup.id)},
        }

        async def record(session: AsyncSession, intent: SetupIntent) -> SetupIntent:
            stored = await session.get(PaymentMethodSetup, setup.id, with_for_update=True)
            assert stored is not None  # noqa: S101 - committed above
            if stored.stripe_setup_intent_id is None:
                stored.stripe_setup_intent_id = intent.id
            return intent

        intent = await call_and_settle(
            self.sessionmaker,
            "setup_intent",
            setup.id,
            lambda key: self.stripe.create_setup_intent(params, idempotency_key=key),
            record,
        )
        return SetupIntentRead(
            setup_intent_id=intent.id,
            client_secret=intent.client_secret,
            status=intent.status or "requires_payment_method",
            customer=customer,
        )


class PaymentMethodManager:
    """List, default and detach: the request's own transaction, Stripe after it."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.methods = PaymentMethodRepository(session)

    async def list(self, user: User) -> PaymentMethodList:
        return PaymentMethodList(
            data=[payment_method_read(m) for m in await self.methods.active(user.id)]
        )

    async def _owned(self, user: User, method_id: str, *, for_update: bool) -> PaymentMethod:
        return await by_public_id(
            PAYMENT_METHOD_PREFIX,
            method_id,
            lambda number: self.methods.get_for_user(user.id, number, for_update=for_update),
            PaymentMethodNotFound,
        )

    async def make_default(self, user: User, method_id: str) -> PaymentMethodRead:
        await self.methods.lock_user(user.id)
        method = await self._owned(user, method_id, for_update=True)
        if method.status != "active":
            raise PaymentMethodDetached("A removed card cannot be the default.")
        if not method.is_default:
            await self.methods.clear_default(user.id)
            await self.session.flush()
            method.is_default = True
            await self.session.flush()
        return payment_method_read(method)

    async def set_auto_reload(
        self, user: User, body: AutoReloadSet, settings: Settings
    ) -> AutoReloadRead:
        check_limits(
            settings,
            "topup",
            body.amount,
            body.currency,
            what="Auto-reloads",
            amounts_of="Auto-reload amounts",
        )
        AmountNotInSteps.check(body.amount, body.currency, charge_step(body.currency), "Charges")
        row = await self.methods.set_auto_reload(
            user.id, body.currency, body.threshold, body.amount, body.enabled
        )
        return auto_reload_read(row)

    async def auto_reloads(self, user: User) -> AutoReloadList:
        return AutoReloadList(
            data=[auto_reload_read(r) for r in await self.methods.auto_reloads(user.id)]
        )

    async def mark_detached(self, user: User, method_id: str) -> PaymentMethod:
        """Step 1 of a detach: the card can no longer be charged. The newest other
        card becomes the default if this one was. Idempotent."""
        await self.methods.lock_user(user.id)
        method = await self._owned(user, method_id, for_update=True)
        if method.status == "active":
            was_default = method.is_default
            method.status = "detached"
            method.is_default = False
            method.detached_at = utcnow()
            await self.session.flush()
            if was_default:
                remaining = await self.methods.active(user.id)
                if remaining:
                    remaining[0].is_default = True
                    await self.session.flush()
            await emit_card_event(self.session, EventType.payment_method_detached, method)
        return method


async def remove(
    sessionmaker: async_sessionmaker[AsyncSession],
    stripe: StripeGateway,
    principal: Principal,
    method_id: str,
) -> PaymentMethodRead:
    """``DELETE /me/payment-methods/{id}``: detached here and committed first (no longer
    chargeable whatever Stripe answers), then at Stripe; a retry does both again,
    idempotently."""
    async with sessionmaker.begin() as session:
        user = await UserRepository(session).upsert_from_principal(principal)
        method = await PaymentMethodManager(session).mark_detached(user, method_id)
    await detach_at_stripe(sessionmaker, stripe, method)
    return payment_method_read(method)


async def detach_at_stripe(
    sessionmaker: async_sessionmaker[AsyncSession], stripe: StripeGateway, method: PaymentMethod
) -> None:
    """Step 2 of a detach, with no transaction open; a card Stripe no longer has
    attached counts as detached."""
    await call_with_key(
        sessionmaker,
        "payment_method_detach",
        method.id,
        lambda key: stripe.detach_payment_method(
            method.stripe_payment_method_id, idempotency_key=key
        ),
    )


# -- setup_intent.succeeded -------------------------------------------------------------
def card_details(payment_method: StripePaymentMethod) -> dict[str, Any] | None:
    """brand, last4, expiry and fingerprint of a card PaymentMethod; nothing else."""
    card = payment_method.card
    if payment_method.type != "card" or card is None:
        return None
    last4 = card.last4 or ""
    fingerprint = card.fingerprint
    if not (len(last4) == 4 and last4.isdigit()) or fingerprint is None:
        return None
    return {
        "brand": (card.display_brand or card.brand or "unknown")[:32],
        "last4": last4,
        "exp_month": card.exp_month or 1,
        "exp_year": card.exp_year or 0,
        "fingerprint": fingerprint[:64],
    }


async def record_saved_card(
    session: AsyncSession, stripe: StripeGateway, user: User, payment_method: StripePaymentMethod
) -> PaymentMethod | None:
    """Store the card a SetupIntent saved, once: a redelivered event finds its row; the
    same card (fingerprint) saved again keeps the first row and the new Stripe
    PaymentMethod is detached. The first card of a user becomes the default."""
    methods = PaymentMethodRepository(session)
    await methods.lock_user(user.id)
    stripe_id = payment_method.id
    existing = await methods.by_stripe_id(stripe_id)
    if existing is not None:
        return existing
    details = card_details(payment_method)
    if details is None:
        log.info("setup intent saved a non-card payment method; not recorded")
        return None
    twin = await methods.active_by_fingerprint(user.id, details["fingerprint"])
    if twin is not None:
        # Not stored twice: the duplicate PaymentMethod leaves the Customer so it is not
        # offered twice by Stripe's own UIs either.
        await call_with_key(
            session,
            "payment_method_duplicate",
            f"{twin.id}:{stripe_id}",
            lambda key: stripe.detach_payment_method(stripe_id, idempotency_key=key),
        )
        log.info("duplicate card not saved", extra={"payment_method_id": twin.id})
        return twin
    method = PaymentMethod(
        user_id=user.id,
        stripe_payment_method_id=stripe_id,
        is_default=await methods.default_for(user.id) is None,
        status="active",
        **details,
    )
    session.add(method)
    await session.flush()
    await session.refresh(method)
    await emit_card_event(session, EventType.payment_method_saved, method)
    return method
