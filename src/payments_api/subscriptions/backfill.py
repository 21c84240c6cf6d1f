"""Backfill of the payment ids of invoices booked before they were kept.

Invoices paid before ``subscription_invoices`` kept the PaymentIntent and charge that
paid them (migration 0020) carry neither, and their ledger entry names no PaymentIntent:
reconciliation cannot match Stripe's charge to them, refunds and disputes cannot find
them. This asks Stripe, through the gateway, for each such invoice's payment (its
invoice payments, then the charge with its balance transaction: the same two reads as
``invoice.paid``) and stores the ids; where Stripe's fee was not booked then (the charge
was not settled yet) it is booked now, once (cause ``stripe:fee:{txn}``).

Idempotent: only rows still missing an id are read, a row is written under its lock
only where the id is still missing, and the fee's cause key makes it once. Bounded: at
most ``max_pages`` pages of ``page_size`` invoices per run, walked in id order, so an
invoice Stripe has no charge for (paid from the customer's credit balance) is counted
and passed, never read twice in one run. Stripe's failures on one invoice are counted
and the run goes on; the next run tries it again. Run by ``payments-api invoices
backfill-payments``.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.kit.pagination import public_id
from payments_api.settings import Settings
from payments_api.stripe.errors import (
    PaymentProviderError,
    PaymentProviderUnavailable,
    ProviderObjectMissing,
)
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import ChargeWithFee
from payments_api.subscriptions.repository import InvoiceRepository
from payments_api.subscriptions.stripe_events import SubscriptionEvents
from payments_api.subscriptions.views import SUBSCRIPTION_PREFIX

log = logging.getLogger(__name__)


class BackfillResult(BaseModel):
    scanned: int = 0
    """Invoices read from Stripe."""
    filled: int = 0
    """Invoices whose PaymentIntent/charge ids were stored."""
    fees_recorded: int = 0
    """Stripe fees booked that the invoice's payment had not booked."""
    without_charge: int = 0
    """Invoices Stripe names no charge for (paid without a card payment)."""
    failed: int = 0
    """Invoices Stripe did not answer for (tried again by the next run)."""
    has_more: bool = False
    """The page limit was reached with a full last page: run again."""


class InvoicePaymentBackfill:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeGateway,
        settings: Settings,
        *,
        page_size: int = 100,
        max_pages: int = 10,
    ) -> None:
        if page_size < 1 or max_pages < 1:
            raise ValueError("page_size and max_pages must be at least 1")
        self.sessionmaker = sessionmaker
        self.stripe = stripe
        self.settings = settings
        self.page_size = page_size
        self.max_pages = max_pages

    async def run(self) -> BackfillResult:
        result = BackfillResult()
        after = 0
        for _ in range(self.max_pages):
            async with self.sessionmaker() as session:
                page = await InvoiceRepository(session).missing_payment_ids(
                    after_id=after, limit=self.page_size
                )
            for row_id, invoice_id in page:
                await self._one(row_id, invoice_id, result)
            result.has_more = len(page) == self.page_size
            if not result.has_more:
                break
            after = page[-1][0]
        log.info("invoice payments backfilled", extra=result.model_dump())
        return result

    async def _one(self, row_id: int, invoice_id: str, result: BackfillResult) -> None:
        # Stripe is read with no transaction open; the row is written under its lock.
        result.scanned += 1
        try:
            charge_id = await self.stripe.invoice_charge(invoice_id)
            charge = await self.stripe.retrieve_charge_with_fee(charge_id) if charge_id else None
        except (PaymentProviderError, PaymentProviderUnavailable, ProviderObjectMissing) as exc:
            result.failed += 1
            log.warning(
                "invoice payment not backfilled; the next run tries again",
                extra={"invoice": invoice_id, "error": exc.code},
            )
            return
        if charge_id is None or charge is None:
            result.without_charge += 1
            return
        async with self.sessionmaker.begin() as session:
            await self._store(session, row_id, charge_id, charge, result)

    async def _store(
        self,
        session: AsyncSession,
        row_id: int,
        charge_id: str,
        charge: ChargeWithFee,
        result: BackfillResult,
    ) -> None:
        row = await InvoiceRepository(session).get_locked(row_id)
        if row is None:
            return
        changed = False
        if row.stripe_charge_id is None:
            row.stripe_charge_id, changed = charge_id, True
        intent = charge.payment_intent
        if row.stripe_payment_intent_id is None and intent is not None:
            row.stripe_payment_intent_id, changed = intent, True
        result.filled += int(changed)
        if row.processing_fee_amount is None:
            events = SubscriptionEvents(session, self.stripe, self.settings)
            await events.record_fee(
                row, charge, public_id(SUBSCRIPTION_PREFIX, row.subscription_id)
            )
            result.fees_recorded += int(row.processing_fee_amount is not None)
