"""Disputes on the charge that paid a subscription invoice.

A dispute names its charge and PaymentIntent, never the invoice: the invoice is found by
the ids its ``invoice.paid`` kept (``stripe_charge_id``, ``stripe_payment_intent_id``;
invoices booked before those ids were kept get them from ``payments-api invoices
backfill-payments``). Found, the dispute belongs to the subscriber (their events, their
wallet frozen while it is open, like any dispute of theirs).

The money: the invoice's revenue went to the platform's ``sales``, so Stripe's withdrawal
is the platform's (as for a catalog order); what the subscriber still holds of the plan
credit the invoice granted (``credited_amount`` less what refunds took back) is taken
back from their available balance into ``disputes`` (cause ``dispute:{dp}:debit``,
``allow_negative_available`` as for a top-up's dispute: the credit may be spent). Won,
it is given back (``dispute:{dp}:credit``); lost, the platform's loss is what Stripe
withdrew less the credit the wallet covered.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.disputes.models import Dispute
from payments_api.disputes.wallet_entries import WalletDebit
from payments_api.subscriptions.models import SubscriptionInvoice
from payments_api.subscriptions.repository import InvoiceRepository


class InvoiceDisputes:
    def __init__(self, session: AsyncSession) -> None:
        self.invoices = InvoiceRepository(session)

    async def invoice_of(
        self, *, payment_intent: str | None, charge: str | None
    ) -> SubscriptionInvoice | None:
        return await self.invoices.by_payment(payment_intent=payment_intent, charge=charge)

    async def credit_to_take_back(self, dispute: Dispute, currency: str) -> WalletDebit | None:
        """The plan credit the disputed invoice granted, to take out of the subscriber's
        wallet (None when there is none left)."""
        if dispute.stripe_invoice_id is None or dispute.user_id is None:
            return None
        # Read, not locked: the dispute holds the user's row, and an invoice refund locks
        # the invoice first; the credit figures are only read here.
        invoice = await self.invoices.by_stripe_id(dispute.stripe_invoice_id, for_update=False)
        if invoice is None or invoice.currency != currency:
            return None
        held = (invoice.credited_amount or 0) - invoice.credit_reversed
        if held <= 0:
            return None
        return WalletDebit(
            user_id=dispute.user_id,
            amount=held,
            description=f"Card dispute on invoice {invoice.stripe_invoice_id}: plan credit",
            metadata={"invoice": invoice.stripe_invoice_id},
        )
