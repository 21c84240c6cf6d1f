"""Stripe's subscription and invoice events (the webhook handlers and the backfill call
these): subscriptions made outside the API adopted or kept for review, invoices
recorded, paid invoices booked in the ledger (revenue, tax, Stripe's fee) and the
plan's wallet credit given, each once per invoice."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.kit.clock import utcnow
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.stripe_fees import processing_fee, settled_fee
from payments_api.settings import Settings
from payments_api.stripe.billing_objects import Invoice
from payments_api.stripe.billing_objects import Subscription as StripeSubscription
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import ChargeWithFee
from payments_api.subscriptions.invoice_events import tell_subscriber
from payments_api.subscriptions.models import Subscription, SubscriptionInvoice
from payments_api.subscriptions.repository import (
    InvoiceRepository,
    PlanRepository,
    SubscriptionRepository,
)
from payments_api.subscriptions.state import SubscriptionState, our_subscription_id, stripe_time
from payments_api.subscriptions.tax import paid_tax, revenue_postings
from payments_api.subscriptions.views import SUBSCRIPTION_PREFIX
from payments_api.webhooks.registry import RetryLater

log = logging.getLogger(__name__)


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

    async def _find(self, metadata: dict[str, str], stripe_id: str | None) -> Subscription | None:
        """Our subscription, locked; RetryLater when it should exist but is not written
        yet; None when it is not one of ours."""
        our_id = our_subscription_id(metadata)
        row = await self.subscriptions.find_locked(
            subscription_id=our_id, stripe_subscription_id=stripe_id
        )
        if row is not None:
            owner = metadata.get("user_id")
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
        self, obj: StripeSubscription, state_at: int, event_type: str
    ) -> Subscription | None:
        """A subscription made outside this service (the Stripe dashboard). For a Stripe
        customer of one of our users it is adopted: recorded (origin ``stripe``) and from
        then on tracked like ours, its invoices booked and its plan credits given. For a
        customer we do not know it is kept in ``unclaimed_subscriptions`` for an admin to
        review, and moves no money."""
        subscription_id, customer = obj.id, obj.customer
        if our_subscription_id(obj.metadata) is not None:
            return None
        item = obj.first_item
        price = item.price if item is not None else None
        price_id = price.id if price is not None else None
        user = await self.subscriptions.user_by_customer(customer) if customer else None
        if user is None or price_id is None:
            await self.subscriptions.record_unclaimed(
                {
                    "stripe_subscription_id": subscription_id,
                    "stripe_customer_id": customer,
                    "status": (obj.status or "unknown")[:24],
                    "stripe_price_id": price_id,
                    "last_event_type": event_type[:64],
                    "stripe_state_at": state_at,
                }
            )
            log.warning("subscription of an unknown Stripe customer kept for review")
            return None
        plan = await PlanRepository(self.session).plan(price_id)
        product = price.product if price is not None else None
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
        self, obj: StripeSubscription, state_at: int, event_type: str = "customer.subscription"
    ) -> None:
        row = await self._find(obj.metadata, obj.id)
        if row is None:
            row = await self._adopt(obj, state_at, event_type)
        if row is not None:
            await self.state.apply(row, obj, state_at)

    async def trial_will_end(self, obj: StripeSubscription, state_at: int) -> None:
        row = await self._find(obj.metadata, obj.id)
        if row is None:
            row = await self._adopt(obj, state_at, "customer.subscription.trial_will_end")
        if row is None:
            return
        await self.state.apply(row, obj, state_at)
        await emit(
            self.session,
            EventType.subscription_trial_will_end,
            await self.state.views.one(row),
            change_key=f"subscription:{row.id}:trial_will_end:{obj.trial_end}",
            user_ids=[row.user_id],
        )

    # -- invoices ---------------------------------------------------------------------------
    async def _invoice(
        self, invoice: Invoice, state_at: int
    ) -> tuple[SubscriptionInvoice, Subscription] | None:
        details = invoice.subscription_details
        stripe_sub = invoice.stripe_subscription_id
        if stripe_sub is None and not our_subscription_id(details.metadata):
            return None  # not a subscription invoice
        subscription = await self._find(details.metadata, stripe_sub)
        customer = invoice.customer
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
        invoice_id = invoice.id
        await self.session.execute(
            insert(SubscriptionInvoice)
            .values(
                stripe_invoice_id=invoice_id,
                subscription_id=subscription.id,
                user_id=subscription.user_id,
                status=invoice.status or "open",
                billing_reason=invoice.billing_reason,
                amount_due=invoice.amount_due,
                amount_paid=invoice.amount_paid,
                currency=invoice.currency[:3],
                stripe_state_at=0,
            )
            .on_conflict_do_nothing(index_elements=[SubscriptionInvoice.stripe_invoice_id])
        )
        row = await self.invoices.by_stripe_id(invoice_id)
        assert row is not None  # noqa: S101 - inserted above
        if state_at >= row.stripe_state_at and row.status != "paid":
            row.status = invoice.status or row.status
            row.amount_due = invoice.amount_due
            row.amount_paid = invoice.amount_paid
            row.attempt_count = invoice.attempt_count
            row.period_start = stripe_time(invoice.period_start)
            row.period_end = stripe_time(invoice.period_end)
            row.hosted_invoice_url = invoice.hosted_invoice_url
            row.stripe_state_at = state_at
            row.updated_at = utcnow()
        return row, subscription

    async def invoice_paid(self, invoice: Invoice, state_at: int) -> None:
        """Revenue (and Stripe's fee) in the ledger, the plan's wallet credit: each once
        per invoice, whatever the number of deliveries."""
        found = await self._invoice(invoice, state_at)
        if found is None:
            return
        row, subscription = found
        paid_at = invoice.status_transitions.paid_at if invoice.status_transitions else None
        row.status = "paid"
        row.amount_paid = invoice.amount_paid
        row.paid_at = row.paid_at or stripe_time(paid_at) or utcnow()
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
        await tell_subscriber(self.session, EventType.invoice_paid, row, "paid")

    async def _payment_of(self, row: SubscriptionInvoice) -> ChargeWithFee | None:
        """The charge that paid the invoice (its balance transaction expanded), and its
        ids kept on the row; None when the invoice was paid without a charge."""
        charge_id = await self.stripe.invoice_charge(row.stripe_invoice_id)
        if charge_id is None:
            return None
        charge = await self.stripe.retrieve_charge_with_fee(charge_id)
        row.stripe_charge_id = charge_id
        row.stripe_payment_intent_id = charge.payment_intent or (row.stripe_payment_intent_id)
        return charge

    async def record_fee(
        self, row: SubscriptionInvoice, charge: ChargeWithFee, reference: str
    ) -> None:
        settled = settled_fee(charge.balance_transaction)
        if settled is None:
            return  # not settled yet; reconciliation sees it later
        transaction_id, fee, fee_currency = settled
        await self.ledger.post(
            processing_fee(
                balance_transaction_id=transaction_id,
                fee=fee,
                currency=fee_currency or row.currency,
                description=f"Stripe fee for invoice {row.stripe_invoice_id} of {reference}",
                metadata={"invoice": row.stripe_invoice_id, "charge": row.stripe_charge_id},
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

    async def invoice_payment_failed(self, invoice: Invoice, state_at: int) -> None:
        await self._attempt_event(
            invoice, state_at, EventType.invoice_payment_failed, "payment_failed"
        )

    async def invoice_payment_action_required(self, invoice: Invoice, state_at: int) -> None:
        await self._attempt_event(
            invoice, state_at, EventType.invoice_payment_action_required, "action_required"
        )

    async def _attempt_event(
        self, invoice: Invoice, state_at: int, event_type: EventType, what: str
    ) -> None:
        """The invoice recorded and the apps told about one payment attempt of it (once
        per attempt: the change key names the attempt)."""
        found = await self._invoice(invoice, state_at)
        if found is None:
            return
        row, _ = found
        await tell_subscriber(self.session, event_type, row, f"{what}:{row.attempt_count}")
