"""Subscriptions: subscribe, manage, and Stripe's word on their state and invoices.

Stripe is the source of truth. Our calls (create, cancel, resume, change) follow the
pay-in pattern: a short transaction writes or locks our row, Stripe is called with a key
derived from it (``subscription:{id}``, ``subscription_update:{id}-{request}``) and no
transaction open, and a second short transaction records Stripe's answer. Webhooks then
keep the row current; each row keeps the Unix time of the Stripe state it holds
(``stripe_state_at``), so an older event never overwrites a newer state.

``entitled`` is derived, never stored: trialing or active, or past_due for at most
``PAYMENTS_SUBSCRIPTIONS_PAST_DUE_GRACE_HOURS`` since it became past_due.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.auth import Principal
from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.installation import outgoing_keys
from payments_api.kit.clock import utcnow
from payments_api.kit.idempotency import IdempotencyKeyReused, fingerprint
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.refs import stripe_id
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
from payments_api.subscriptions.models import Subscription, SubscriptionInvoice
from payments_api.subscriptions.plans import plan_read
from payments_api.subscriptions.repository import (
    InvoiceRepository,
    PlanRepository,
    SubscriptionRepository,
)
from payments_api.subscriptions.schemas import (
    InvoiceRead,
    PauseCollection,
    PlanRead,
    PreviewLine,
    ProrationPreview,
    SubscriptionCancel,
    SubscriptionChange,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionPause,
    SubscriptionRead,
    UnclaimedSubscriptionList,
    UnclaimedSubscriptionRead,
)
from payments_api.subscriptions.tax import paid_tax, revenue_postings
from payments_api.users.models import User
from payments_api.users.repository import UserRepository
from payments_api.webhooks.registry import RetryLater

log = logging.getLogger(__name__)

SUBSCRIPTION_PREFIX = "subs"
TERMINAL = frozenset({"canceled", "incomplete_expired"})
CHANGEABLE = frozenset({"trialing", "active"})


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


def is_entitled(subscription: Subscription, *, now: datetime, grace_hours: int) -> bool:
    if subscription.pause_behavior is not None:
        return False  # collection paused: the subscriber is not paying, so not entitled
    if subscription.status in ("trialing", "active"):
        return True
    if subscription.status == "past_due":
        since = subscription.past_due_since or now
        return now < since + timedelta(hours=grace_hours)
    return False


def _our_id(metadata: Any) -> int | None:
    raw = (metadata or {}).get("subscription_id") if isinstance(metadata, dict) else None
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


class SubscriptionViews:
    """Read models of subscriptions and invoices (plans joined, entitlement derived)."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.plans = PlanRepository(session)

    async def plans_of(self, rows: list[Subscription]) -> dict[str, PlanRead]:
        ids = sorted({row.stripe_price_id for row in rows})
        if not ids:
            return {}
        found = await self.plans.plans(active_only=False, price_ids=ids)
        return {price.stripe_price_id: plan_read(price, product) for price, product in found}

    def read(self, row: Subscription, plan: PlanRead | None) -> SubscriptionRead:
        return SubscriptionRead(
            id=public_id(SUBSCRIPTION_PREFIX, row.id),
            status=row.status,
            entitled=is_entitled(
                row, now=utcnow(), grace_hours=self.settings.subscriptions_past_due_grace_hours
            ),
            plan=plan,
            cancel_at_period_end=row.cancel_at_period_end,
            current_period_start=row.current_period_start,
            current_period_end=row.current_period_end,
            trial_end=row.trial_end,
            past_due_since=row.past_due_since,
            pause_collection=PauseCollection(
                behavior=row.pause_behavior,
                resumes_at=row.pause_resumes_at,
            )
            if row.pause_behavior is not None
            else None,
            origin="stripe" if row.origin == "stripe" else "api",
            canceled_at=row.canceled_at,
            ended_at=row.ended_at,
            stripe_subscription_id=row.stripe_subscription_id,
            created_at=row.created_at,
        )

    async def one(self, row: Subscription) -> SubscriptionRead:
        return self.read(row, (await self.plans_of([row])).get(row.stripe_price_id))

    @staticmethod
    def invoice(row: SubscriptionInvoice) -> InvoiceRead:
        return InvoiceRead(
            id=row.stripe_invoice_id,
            subscription_id=public_id(SUBSCRIPTION_PREFIX, row.subscription_id),
            status=row.status,
            billing_reason=row.billing_reason,
            amount_due=row.amount_due,
            amount_paid=row.amount_paid,
            currency=row.currency,
            attempt_count=row.attempt_count,
            period_start=row.period_start,
            period_end=row.period_end,
            hosted_invoice_url=row.hosted_invoice_url,
            paid_at=row.paid_at,
            credited_amount=row.credited_amount,
            refunded_amount=row.refunded_amount,
            credit_reversed=row.credit_reversed,
            tax_amount=row.tax_amount,
        )


class SubscriptionState:
    """Applies Stripe's subscription objects to our rows, newest state wins, and emits
    the outgoing events of what changed. Runs in the caller's transaction."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.views = SubscriptionViews(session, settings)

    async def apply(self, row: Subscription, obj: dict[str, Any], state_at: int) -> bool:
        """Apply ``obj`` (Stripe's subscription as of ``state_at``); False when it is
        older than what the row holds."""
        status = str(obj.get("status") or row.status)
        stored_at = row.stripe_state_at
        if stored_at is not None and state_at < stored_at:
            return False  # an older event: the row holds a newer state
        if row.status in TERMINAL and status != row.status and stored_at is not None:
            return False  # canceled and expired subscriptions never come back at Stripe
        if stored_at == state_at and status == "incomplete" and row.status != "incomplete":
            # Same second: the creation's snapshot never undoes what followed it.
            return False
        before = (row.status, row.cancel_at_period_end, row.stripe_price_id, row.pause_behavior)
        first_seen = row.stripe_subscription_id is None
        row.stripe_subscription_id = row.stripe_subscription_id or stripe_id(obj.get("id"))
        items = ((obj.get("items") or {}).get("data")) or []
        item = items[0] if items else {}
        if item:
            row.stripe_item_id = stripe_id(item.get("id")) or row.stripe_item_id
            row.stripe_price_id = stripe_id(item.get("price")) or row.stripe_price_id
        row.current_period_start = _time(
            item.get("current_period_start", obj.get("current_period_start"))
        )
        row.current_period_end = _time(
            item.get("current_period_end", obj.get("current_period_end"))
        )
        row.trial_end = _time(obj.get("trial_end"))
        row.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
        row.canceled_at = _time(obj.get("canceled_at"))
        row.ended_at = _time(obj.get("ended_at"))
        row.latest_invoice_id = stripe_id(obj.get("latest_invoice")) or row.latest_invoice_id
        pause = obj.get("pause_collection")
        if isinstance(pause, dict) and pause.get("behavior"):
            row.pause_behavior = str(pause["behavior"])[:24]
            row.pause_resumes_at = _time(pause.get("resumes_at"))
        elif "pause_collection" in obj:
            row.pause_behavior = row.pause_resumes_at = None
        if status == "past_due":
            if row.status != "past_due" or row.past_due_since is None:
                row.past_due_since = datetime.fromtimestamp(state_at, UTC)
        else:
            row.past_due_since = None
        row.status = status
        row.stripe_state_at = state_at
        row.updated_at = utcnow()
        await self.session.flush()
        read = await self.views.one(row)
        if first_seen and row.stripe_subscription_id is not None:
            await emit(
                self.session,
                EventType.subscription_created,
                read,
                change_key=f"subscription:{row.id}:created",
                user_ids=[row.user_id],
            )
        after = (row.status, row.cancel_at_period_end, row.stripe_price_id, row.pause_behavior)
        if after != before and not first_seen:
            await emit(
                self.session,
                EventType.subscription_updated,
                read,
                change_key=f"subscription:{row.id}:updated:{state_at}:"
                f"{row.status}:{int(row.cancel_at_period_end)}:{row.stripe_price_id}:"
                f"{row.pause_behavior or ''}",
                user_ids=[row.user_id],
            )
        if row.status == "canceled" and before[0] != "canceled":
            await emit(
                self.session,
                EventType.subscription_canceled,
                read,
                change_key=f"subscription:{row.id}:canceled",
                user_ids=[row.user_id],
            )
        return True


class SubscriptionEvents:
    """Stripe's subscription and invoice events (webhook handlers call these)."""

    def __init__(self, session: AsyncSession, stripe: StripeGateway, settings: Settings) -> None:
        self.session = session
        self.stripe = stripe
        self.settings = settings
        self.subscriptions = SubscriptionRepository(session)
        self.invoices = InvoiceRepository(session)
        self.state = SubscriptionState(session, settings)
        self.ledger = ledger_service.LedgerService(session)

    async def _find(self, metadata: Any, stripe_id: str | None) -> Subscription | None:
        """Our subscription, locked; RetryLater when it should exist but is not written
        yet; None when it is not one of ours."""
        our_id = _our_id(metadata)
        row = await self.subscriptions.find_locked(
            subscription_id=our_id, stripe_subscription_id=stripe_id
        )
        if row is not None:
            owner = (metadata or {}).get("user_id") if isinstance(metadata, dict) else None
            if owner is not None and owner != row.user_id:
                log.warning("subscription metadata names another user; ignored")
                return None
            if stripe_id and row.stripe_subscription_id not in (None, stripe_id):
                return None  # our id in another installation's metadata
            return row
        if our_id is not None:
            # Ours (our id is in its metadata) but not committed yet: the subscribe
            # request is between its two transactions.
            raise RetryLater(f"no subscription {our_id} yet")
        return None  # made elsewhere (the dashboard, another service): not ours

    async def _adopt(
        self, obj: dict[str, Any], state_at: int, event_type: str
    ) -> Subscription | None:
        """A subscription made outside this service (the Stripe dashboard). For a Stripe
        customer of one of our users it is adopted: recorded (origin ``stripe``) and from
        then on tracked like ours, its invoices booked and its plan credits given. For a
        customer we do not know it is kept in ``unclaimed_subscriptions`` for an admin to
        review, and moves no money."""
        subscription_id, customer = stripe_id(obj.get("id")), stripe_id(obj.get("customer"))
        if subscription_id is None or _our_id(obj.get("metadata")) is not None:
            return None
        items = ((obj.get("items") or {}).get("data")) or []
        price = (items[0].get("price") if items else None) or {}
        price_id = stripe_id(price)
        user = await self.subscriptions.user_by_customer(customer) if customer else None
        if user is None or price_id is None:
            await self.subscriptions.record_unclaimed(
                {
                    "stripe_subscription_id": subscription_id,
                    "stripe_customer_id": customer,
                    "status": str(obj.get("status") or "unknown")[:24],
                    "stripe_price_id": price_id,
                    "last_event_type": event_type[:64],
                    "stripe_state_at": state_at,
                }
            )
            log.warning("subscription of an unknown Stripe customer kept for review")
            return None
        plan = await PlanRepository(self.session).plan(price_id)
        product = stripe_id(price.get("product")) if isinstance(price, dict) else None
        family = plan[1].family if plan is not None else (product or price_id)
        row = await self.subscriptions.adopt(
            {
                "user_id": user.id,
                "stripe_price_id": price_id,
                "family": family,
                "status": "incomplete",
                "origin": "stripe",
                "idempotency_key": f"stripe:{subscription_id}"[:255],
                "request_fingerprint": "0" * 64,
                "cancel_at_period_end": False,
            }
        )
        if row is not None and row.stripe_subscription_id is None:
            log.warning("adopting subscription %s made outside the API", row.id)
        return row

    async def subscription_changed(
        self, obj: dict[str, Any], state_at: int, event_type: str = "customer.subscription"
    ) -> None:
        row = await self._find(obj.get("metadata"), stripe_id(obj.get("id")))
        if row is None:
            row = await self._adopt(obj, state_at, event_type)
        if row is not None:
            await self.state.apply(row, obj, state_at)

    async def trial_will_end(self, obj: dict[str, Any], state_at: int) -> None:
        row = await self._find(obj.get("metadata"), stripe_id(obj.get("id")))
        if row is None:
            row = await self._adopt(obj, state_at, "customer.subscription.trial_will_end")
        if row is None:
            return
        await self.state.apply(row, obj, state_at)
        await emit(
            self.session,
            EventType.subscription_trial_will_end,
            await self.state.views.one(row),
            change_key=f"subscription:{row.id}:trial_will_end:{obj.get('trial_end')}",
            user_ids=[row.user_id],
        )

    # -- invoices ---------------------------------------------------------------------------
    async def _invoice(
        self, invoice: dict[str, Any], state_at: int
    ) -> tuple[SubscriptionInvoice, Subscription] | None:
        details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
        stripe_sub = stripe_id(details.get("subscription")) or stripe_id(
            invoice.get("subscription")
        )
        if stripe_sub is None and not _our_id(details.get("metadata")):
            return None  # not a subscription invoice
        subscription = await self._find(details.get("metadata"), stripe_sub)
        customer = stripe_id(invoice.get("customer"))
        if (
            subscription is None
            and stripe_sub is not None
            and customer is not None
            and await self.subscriptions.user_by_customer(customer) is not None
        ):
            # An invoice of a subscription made elsewhere for one of our customers, before
            # its own event: adopt it from Stripe's current object.
            obj = await self.stripe.retrieve_subscription(stripe_sub)
            subscription = await self._adopt(obj, state_at, "invoice")
            if subscription is not None:
                await self.state.apply(subscription, obj, state_at)
        if subscription is None:
            return None
        invoice_id = str(invoice["id"])
        await self.session.execute(
            insert(SubscriptionInvoice)
            .values(
                stripe_invoice_id=invoice_id,
                subscription_id=subscription.id,
                user_id=subscription.user_id,
                status=str(invoice.get("status") or "open"),
                billing_reason=invoice.get("billing_reason"),
                amount_due=int(invoice.get("amount_due") or 0),
                amount_paid=int(invoice.get("amount_paid") or 0),
                currency=str(invoice.get("currency") or "")[:3],
                stripe_state_at=0,
            )
            .on_conflict_do_nothing(index_elements=[SubscriptionInvoice.stripe_invoice_id])
        )
        row = await self.invoices.by_stripe_id(invoice_id)
        assert row is not None  # noqa: S101 - inserted above
        if state_at >= row.stripe_state_at and row.status != "paid":
            row.status = str(invoice.get("status") or row.status)
            row.amount_due = int(invoice.get("amount_due") or 0)
            row.amount_paid = int(invoice.get("amount_paid") or 0)
            row.attempt_count = int(invoice.get("attempt_count") or 0)
            row.period_start = _time(invoice.get("period_start"))
            row.period_end = _time(invoice.get("period_end"))
            row.hosted_invoice_url = invoice.get("hosted_invoice_url")
            row.stripe_state_at = state_at
            row.updated_at = utcnow()
        return row, subscription

    async def invoice_paid(self, invoice: dict[str, Any], state_at: int) -> None:
        """Revenue (and Stripe's fee) in the ledger, the plan's wallet credit: each once
        per invoice, whatever the number of deliveries."""
        found = await self._invoice(invoice, state_at)
        if found is None:
            return
        row, subscription = found
        transitions = invoice.get("status_transitions") or {}
        row.status = "paid"
        row.amount_paid = int(invoice.get("amount_paid") or 0)
        row.paid_at = row.paid_at or _time(transitions.get("paid_at")) or utcnow()
        amount, currency, invoice_id = row.amount_paid, row.currency, row.stripe_invoice_id
        if row.tax_amount is None:
            row.tax_amount = paid_tax(invoice, amount)
        reference = public_id(SUBSCRIPTION_PREFIX, subscription.id)
        if amount > 0:
            charge = None
            if row.stripe_charge_id is None or row.processing_fee_amount is None:
                charge = await self._payment_of(row)
            metadata: dict[str, Any] = {"subscription_id": subscription.id, "invoice": invoice_id}
            if row.stripe_payment_intent_id:
                # How reconciliation names the payment (Stripe's charge is keyed by it).
                metadata["payment_intent"] = row.stripe_payment_intent_id
            await self.ledger.post(
                ledger_service.NewTransaction(
                    type="subscription_payment",
                    cause_type=CauseType.stripe_event,
                    cause_key=f"stripe:invoice:{invoice_id}",
                    description=f"Invoice {invoice_id} of {reference}",
                    metadata=metadata,
                    postings=[
                        *revenue_postings(amount, row.tax_amount or 0, currency),
                        ledger_service.PostingSpec(
                            ledger_service.AccountRef.platform(
                                AccountKind.stripe_balance, currency
                            ),
                            -amount,
                        ),
                    ],
                )
            )
            if row.processing_fee_amount is None and charge is not None:
                await self.record_fee(row, charge, reference)
            await self._credit(row, subscription, reference)
        await emit(
            self.session,
            EventType.invoice_paid,
            SubscriptionViews.invoice(row),
            change_key=f"invoice:{invoice_id}:paid",
            user_ids=[subscription.user_id],
        )

    async def _payment_of(self, row: SubscriptionInvoice) -> dict[str, Any] | None:
        """The charge that paid the invoice (its balance transaction expanded), and its
        ids kept on the row; None when the invoice was paid without a charge."""
        charge_id = await self.stripe.invoice_charge(row.stripe_invoice_id)
        if charge_id is None:
            return None
        charge = await self.stripe.retrieve_charge_with_fee(charge_id)
        row.stripe_charge_id = charge_id
        row.stripe_payment_intent_id = stripe_id(charge.get("payment_intent")) or (
            row.stripe_payment_intent_id
        )
        return charge

    async def record_fee(
        self, row: SubscriptionInvoice, charge: dict[str, Any], reference: str
    ) -> None:
        charge_id = row.stripe_charge_id
        transaction = charge.get("balance_transaction")
        if not isinstance(transaction, dict) or not transaction.get("fee"):
            return  # not settled yet; reconciliation sees it later
        fee = int(transaction["fee"])
        currency = str(transaction.get("currency") or row.currency)
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="processing_fee",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:fee:{transaction['id']}",
                description=f"Stripe fee for invoice {row.stripe_invoice_id} of {reference}",
                metadata={"invoice": row.stripe_invoice_id, "charge": charge_id},
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
        row.processing_fee_amount = fee

    async def _credit(
        self, row: SubscriptionInvoice, subscription: Subscription, reference: str
    ) -> None:
        """The plan's ``monthly_credit`` to the subscriber's wallet: cause
        ``subscription_credit:{invoice}``, so once per paid invoice."""
        plan = await PlanRepository(self.session).plan(subscription.stripe_price_id)
        if plan is None or plan[0].monthly_credit is None:
            return
        credit, currency = plan[0].monthly_credit, plan[0].currency
        if currency != row.currency:
            log.warning("plan credit currency differs from the invoice's; not credited")
            return
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="subscription_credit",
                cause_type=CauseType.stripe_event,
                cause_key=f"subscription_credit:{row.stripe_invoice_id}",
                description=f"Plan credit for invoice {row.stripe_invoice_id} of {reference}",
                metadata={"subscription_id": subscription.id, "invoice": row.stripe_invoice_id},
                postings=[
                    ledger_service.PostingSpec(
                        ledger_service.AccountRef.user(
                            subscription.user_id, AccountKind.available, currency
                        ),
                        credit,
                    ),
                    ledger_service.PostingSpec(
                        ledger_service.AccountRef.platform(AccountKind.sales, currency),
                        -credit,
                    ),
                ],
            )
        )
        row.credited_amount = credit

    async def invoice_payment_failed(self, invoice: dict[str, Any], state_at: int) -> None:
        found = await self._invoice(invoice, state_at)
        if found is None:
            return
        row, subscription = found
        await emit(
            self.session,
            EventType.invoice_payment_failed,
            SubscriptionViews.invoice(row),
            change_key=f"invoice:{row.stripe_invoice_id}:payment_failed:{row.attempt_count}",
            user_ids=[subscription.user_id],
        )

    async def invoice_payment_action_required(self, invoice: dict[str, Any], state_at: int) -> None:
        found = await self._invoice(invoice, state_at)
        if found is None:
            return
        row, subscription = found
        await emit(
            self.session,
            EventType.invoice_payment_action_required,
            SubscriptionViews.invoice(row),
            change_key=f"invoice:{row.stripe_invoice_id}:action_required:{row.attempt_count}",
            user_ids=[subscription.user_id],
        )


class SubscriptionService:
    """The subscriber's own calls; never a transaction open across a Stripe call."""

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

    # -- subscribe -----------------------------------------------------------------------------
    async def create(self, body: SubscriptionCreate, idempotency_key: str) -> SubscriptionCreated:
        request_fingerprint = fingerprint(body.model_dump(mode="json"))
        row, user, plan = await self._find_or_create(body, idempotency_key, request_fingerprint)
        if row.stripe_subscription_id is not None:
            # A retry: Stripe's current object (its client secret) without a second one.
            obj = await self.stripe.retrieve_subscription(row.stripe_subscription_id)
        else:
            customer = await self._ensure_customer(user)
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
            obj = await self.stripe.create_subscription(
                params,
                idempotency_key=(await outgoing_keys(self.sessionmaker)).derive(
                    "subscription", row.id
                ),
            )
        read = await self._store(row, obj, first=row.stripe_subscription_id is None)
        # Recorded before paying, so a failed payment call leaves Stripe's id for the
        # retry to read back instead of creating again.
        paid = await self._pay_first_invoice(row, user, obj)
        if paid is not obj:
            obj = paid
            read = await self._store(row, obj, first=False)
        secret, kind = _client_secret(obj)
        return SubscriptionCreated(
            **read.model_dump(), client_secret=secret, client_secret_type=kind
        )

    async def _store(
        self, row: Subscription, obj: dict[str, Any], *, first: bool
    ) -> SubscriptionRead:
        async with self.sessionmaker.begin() as session:
            locked = await SubscriptionRepository(session).get(row.id, for_update=True)
            assert locked is not None  # noqa: S101 - written above
            if locked.stripe_state_at is None or not first:
                # Nothing from webhooks yet: the creation's own snapshot, as of its time;
                # a read back or the state after paying: applied unless webhooks told
                # newer (SubscriptionState orders them).
                state_at = int(obj.get("created") or self.now().timestamp())
                await SubscriptionState(session, self.settings).apply(locked, obj, state_at)
            return await SubscriptionViews(session, self.settings).one(locked)

    async def _pay_first_invoice(
        self, row: Subscription, user: User, obj: dict[str, Any]
    ) -> dict[str, Any]:
        if open_first_invoice(obj) is None:
            return obj
        payment_method = row.payment_method
        if payment_method is None:
            async with self.sessionmaker() as session:
                payment_method = await saved_card(session, user.id)
        return await pay_first_invoice(
            self.stripe,
            obj,
            payment_method=payment_method,
            idempotency_key=(await outgoing_keys(self.sessionmaker)).derive(
                "subscription_first_invoice", row.id
            ),
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

    async def _ensure_customer(self, user: User) -> str:
        """The user's Stripe Customer (the same ``customer:{user}`` key as pay-ins)."""
        if user.stripe_customer_id:
            return user.stripe_customer_id
        customer = await self.stripe.create_customer(
            user_id=user.id,
            email=user.email,
            idempotency_key=(await outgoing_keys(self.sessionmaker)).derive("customer", user.id),
        )
        async with self.sessionmaker.begin() as session:
            await session.execute(
                update(User)
                .where(User.id == user.id, User.stripe_customer_id.is_(None))
                .values(stripe_customer_id=customer["id"])
            )
            stored = await UserRepository(session).get(user.id)
            assert stored is not None  # noqa: S101 - provisioned before
            return stored.stripe_customer_id or str(customer["id"])

    # -- manage ---------------------------------------------------------------------------------
    async def _mine(self, subscription_id: str) -> Subscription:
        number = parse_public_id(SUBSCRIPTION_PREFIX, subscription_id)
        async with self.sessionmaker.begin() as session:
            row = (
                await SubscriptionRepository(session).get_for_user(self.principal.sub, number)
                if number is not None
                else None
            )
        if row is None:
            raise SubscriptionNotFound()
        return row

    async def _key(self, operation: str, row: Subscription, idempotency_key: str) -> str:
        request = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        return (await outgoing_keys(self.sessionmaker)).derive(operation, f"{row.id}-{request}")

    async def _record(self, row: Subscription, obj: dict[str, Any]) -> SubscriptionRead:
        async with self.sessionmaker.begin() as session:
            locked = await SubscriptionRepository(session).get(row.id, for_update=True)
            assert locked is not None  # noqa: S101
            await SubscriptionState(session, self.settings).apply(
                locked, obj, int(self.now().timestamp())
            )
            return await SubscriptionViews(session, self.settings).one(locked)

    async def cancel(
        self, subscription_id: str, body: SubscriptionCancel, idempotency_key: str
    ) -> SubscriptionRead:
        row = await self._mine(subscription_id)
        if row.stripe_subscription_id is None or row.status in TERMINAL:
            raise SubscriptionNotActive(f"A {row.status} subscription cannot be canceled.")
        if body.at_period_end:
            obj = await self.stripe.update_subscription(
                row.stripe_subscription_id,
                {"cancel_at_period_end": True},
                idempotency_key=await self._key("subscription_update", row, idempotency_key),
            )
        else:
            obj = await self.stripe.cancel_subscription(
                row.stripe_subscription_id,
                idempotency_key=await self._key("subscription_cancel", row, idempotency_key),
            )
        return await self._record(row, obj)

    async def resume(self, subscription_id: str, idempotency_key: str) -> SubscriptionRead:
        row = await self._mine(subscription_id)
        if (
            row.stripe_subscription_id is None
            or not row.cancel_at_period_end
            or row.status not in ("trialing", "active", "past_due")
            or (row.current_period_end is not None and row.current_period_end <= self.now())
        ):
            raise SubscriptionNotResumable()
        obj = await self.stripe.update_subscription(
            row.stripe_subscription_id,
            {"cancel_at_period_end": False},
            idempotency_key=await self._key("subscription_update", row, idempotency_key),
        )
        return await self._record(row, obj)

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
        obj = await self.stripe.update_subscription(
            row.stripe_subscription_id,
            {"pause_collection": pause},
            idempotency_key=await self._key("subscription_update", row, idempotency_key),
        )
        return await self._record(row, obj)

    async def unpause(self, subscription_id: str, idempotency_key: str) -> SubscriptionRead:
        """Resume payment collection (``pause_collection`` unset)."""
        row = await self._mine(subscription_id)
        if row.stripe_subscription_id is None or row.pause_behavior is None:
            raise SubscriptionNotPaused()
        obj = await self.stripe.update_subscription(
            row.stripe_subscription_id,
            {"pause_collection": ""},
            idempotency_key=await self._key("subscription_update", row, idempotency_key),
        )
        return await self._record(row, obj)

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
        lines = []
        for line in (invoice.get("lines") or {}).get("data") or []:
            parent = line.get("parent") or {}
            details = (
                parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
            )
            lines.append(
                PreviewLine(
                    description=line.get("description"),
                    amount=int(line.get("amount") or 0),
                    proration=bool(details.get("proration")),
                )
            )
        return ProrationPreview(
            price=price_id,
            amount_due=int(invoice.get("amount_due") or 0),
            currency=str(invoice.get("currency") or ""),
            proration_date=proration_date,
            lines=lines,
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
        assert row.stripe_subscription_id is not None  # noqa: S101 - checked
        obj = await self.stripe.update_subscription(
            row.stripe_subscription_id,
            params,
            idempotency_key=await self._key("subscription_update", row, idempotency_key),
        )
        return await self._record(row, obj)


def _client_secret(obj: dict[str, Any]) -> tuple[str | None, Any]:
    """The secret the customer confirms when they must act, and what it belongs to."""
    invoice = obj.get("latest_invoice")
    if obj.get("status") == "incomplete" and isinstance(invoice, dict):
        secret = invoice.get("confirmation_secret")
        if isinstance(secret, dict) and secret.get("client_secret"):
            return str(secret["client_secret"]), "payment_intent"
        intent = invoice.get("payment_intent")  # older API versions
        if isinstance(intent, dict) and intent.get("client_secret"):
            return str(intent["client_secret"]), "payment_intent"
    setup = obj.get("pending_setup_intent")
    if isinstance(setup, dict) and setup.get("client_secret"):
        return str(setup["client_secret"]), "setup_intent"
    return None, None


class SubscriptionQueries:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.repository = SubscriptionRepository(session)
        self.views = SubscriptionViews(session, settings)

    async def list(self, user: User, *, limit: int, starting_after: str | None) -> SubscriptionList:
        rows = await self.repository.page(
            user.id,
            limit=limit + 1,
            before_id=parse_cursor(SUBSCRIPTION_PREFIX, starting_after),
        )
        page = rows[:limit]
        plans = await self.views.plans_of(page)
        return SubscriptionList(
            data=[self.views.read(row, plans.get(row.stripe_price_id)) for row in page],
            has_more=len(rows) > limit,
        )

    async def get(self, user: User, subscription_id: str) -> SubscriptionRead:
        number = parse_public_id(SUBSCRIPTION_PREFIX, subscription_id)
        row = await self.repository.get_for_user(user.id, number) if number else None
        if row is None:
            raise SubscriptionNotFound()
        return await self.views.one(row)


async def unclaimed_subscriptions(
    session: AsyncSession, *, limit: int
) -> UnclaimedSubscriptionList:
    """Subscriptions of Stripe customers we do not know, newest first (admin review)."""
    rows = await SubscriptionRepository(session).unclaimed(limit=limit)
    return UnclaimedSubscriptionList(
        data=[
            UnclaimedSubscriptionRead(
                stripe_subscription_id=row.stripe_subscription_id,
                stripe_customer_id=row.stripe_customer_id,
                status=row.status,
                stripe_price_id=row.stripe_price_id,
                last_event_type=row.last_event_type,
                first_seen_at=row.created_at,
                updated_at=row.updated_at,
            )
            for row in rows
        ]
    )
