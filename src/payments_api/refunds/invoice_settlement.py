"""Applying Stripe's word on a refund of a subscription invoice's charge (the flow is
:mod:`payments_api.refunds.two_phase`; the service is :mod:`payments_api.refunds.invoices`).

The ledger on ``succeeded``: the revenue comes back out of ``sales`` to the card
(``stripe_balance +amount``, cause ``stripe:refund:{re}``, which reconciliation matches
to Stripe's refund); the plan credit share leaves the wallet back to ``sales`` (the hold,
else what is available, the rest, only when forced or for dashboard refunds, from
``adjustments``; cause ``invoice_refund:{id}:credit``). The credit share is the
cumulative largest remainder of the invoice's credit over its refunds
(``money.proportional_part``), so refunding an invoice in parts takes back exactly its
credit. Stripe keeps its processing fee on a refund, so the fee line stays as booked;
the invoice's tax leaves ``tax_collected`` in the same proportion (the refund's
``sales`` line is the rest), so a full refund gives back exactly the tax booked.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from payments_api.events.types import EventType
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind
from payments_api.money import proportional_part
from payments_api.orders.refund_repository import IN_FLIGHT
from payments_api.refunds.invoice_models import InvoiceRefund
from payments_api.refunds.invoice_repository import InvoiceLookup, InvoiceRefundRepository
from payments_api.refunds.reads import shared_fields
from payments_api.refunds.refund_events import Outcome, emit_refund_outcome
from payments_api.refunds.refund_ledger import (
    platform_account,
    refund_transaction,
    to_the_card,
    user_account,
)
from payments_api.refunds.schemas import RefundRead
from payments_api.refunds.two_phase import RefundSettlementFlow
from payments_api.stripe.objects import Refund as StripeRefund
from payments_api.subscriptions.invoice_events import tell_subscriber
from payments_api.subscriptions.models import SubscriptionInvoice
from payments_api.subscriptions.tax import refund_tax_share, revenue_postings

log = logging.getLogger(__name__)

INVOICE_REFUND_PREFIX = "rfi"


def invoice_refund_read(refund: InvoiceRefund, invoice: SubscriptionInvoice) -> RefundRead:
    return RefundRead(
        **shared_fields(refund),
        id=public_id(INVOICE_REFUND_PREFIX, refund.id),
        order_id=None,
        invoice_id=invoice.stripe_invoice_id,
        held_amount=refund.credit_hold if refund.status in IN_FLIGHT else 0,
        credit_taken_back=refund.credit_share,
    )


def credit_share(invoice: SubscriptionInvoice, amount: int, before: int) -> int:
    credited = invoice.credited_amount or 0
    if not credited or invoice.amount_paid <= 0:
        return 0
    before = min(before, invoice.amount_paid - amount)
    return proportional_part(amount, invoice.amount_paid, credited, before)


class InvoiceRefundSettlement(RefundSettlementFlow[InvoiceRefund, SubscriptionInvoice]):
    """Applies Stripe's word on a refund of an invoice's charge: the only code that moves
    the money of invoice refunds. Runs in the caller's transaction; ``apply`` returns
    None when the refund is not about a subscription invoice (the pay-in refunds then
    have their turn)."""

    label = "invoice refund"
    public_prefix = INVOICE_REFUND_PREFIX
    metadata_key = "invoice_refund_id"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invoices = InvoiceLookup(self.session)

    def _rows(self) -> InvoiceRefundRepository:
        return InvoiceRefundRepository(self.session)

    async def parent_of(
        self, refund: InvoiceRefund, *, for_update: bool = False
    ) -> SubscriptionInvoice | None:
        return await self.invoices.get(refund.invoice_id, for_update=for_update)

    async def _record_external(self, stripe_refund: StripeRefund) -> InvoiceRefund | None:
        invoice = await self.invoices.by_payment(
            payment_intent=stripe_refund.payment_intent,
            charge=stripe_refund.charge,
        )
        if invoice is None:
            return None
        values = {"invoice_id": invoice.id, "user_id": invoice.user_id}
        return await self._record(
            stripe_refund, invoice.currency, values, f"invoice {invoice.stripe_invoice_id}"
        )

    async def _emit_succeeded(self, refund: InvoiceRefund, invoice: SubscriptionInvoice) -> None:
        await self._emit(refund, invoice, "succeeded")
        await tell_subscriber(
            self.session, EventType.invoice_refunded, invoice, f"refunded:{refund.id}"
        )

    async def emit_failed(self, refund: InvoiceRefund, invoice: SubscriptionInvoice) -> None:
        await self._emit(refund, invoice, "failed")

    async def _emit(
        self, refund: InvoiceRefund, invoice: SubscriptionInvoice, outcome: Outcome
    ) -> None:
        read = invoice_refund_read(refund, invoice)
        await emit_refund_outcome(self.session, read, "invoice_refund", refund.id, outcome)

    async def _settle(
        self, refund: InvoiceRefund, invoice: SubscriptionInvoice, now: datetime
    ) -> None:
        currency, amount = refund.currency, refund.amount
        # The tax goes back with the refund in proportion: what the authority is owed
        # shrinks with what the customer paid.
        tax = refund_tax_share(
            amount, invoice.amount_paid, invoice.tax_amount or 0, invoice.refunded_amount
        )
        revenue = [
            ledger_service.PostingSpec(posting.account, -posting.amount)
            for posting in revenue_postings(amount, tax, currency)
        ]
        await self.ledger.post(
            refund_transaction(
                refund,
                "invoice_refund",
                to_the_card(refund, revenue),
                description=f"Refund {public_id(INVOICE_REFUND_PREFIX, refund.id)} of invoice "
                f"{invoice.stripe_invoice_id}",
                invoice=invoice.stripe_invoice_id,
            )
        )
        share = credit_share(invoice, amount, invoice.refunded_amount)
        share = min(share, (invoice.credited_amount or 0) - invoice.credit_reversed)
        invoice.refunded_amount += amount
        invoice.credit_reversed += share
        invoice.updated_at = now
        hold = refund.credit_hold
        refund.credit_share = share
        refund.credit_hold = min(hold, share)
        if not share and not hold:
            return
        from_hold = min(hold, share)
        rest = share - from_hold
        available = 0
        if rest:
            available = max(
                0,
                await self.ledger.balance_of(
                    user_account(refund.user_id, AccountKind.available, currency)
                ),
            )
        from_available = min(available, rest)
        shortfall = rest - from_available
        postings = []
        if hold:
            postings.append(
                ledger_service.PostingSpec(
                    user_account(refund.user_id, AccountKind.withdrawing, currency), -hold
                )
            )
        back_to_available = (hold - from_hold) - from_available
        if back_to_available:
            postings.append(
                ledger_service.PostingSpec(
                    user_account(refund.user_id, AccountKind.available, currency), back_to_available
                )
            )
        if shortfall:
            log.warning(
                "invoice refund %s: %s minor units of plan credit were spent; the platform "
                "bears them (adjustments)",
                refund.id,
                shortfall,
            )
            postings.append(
                ledger_service.PostingSpec(
                    platform_account(AccountKind.adjustments, currency), -shortfall
                )
            )
        if share:
            postings.append(
                ledger_service.PostingSpec(platform_account(AccountKind.sales, currency), share)
            )
        await self.ledger.post(
            refund_transaction(
                refund,
                "invoice_refund_credit",
                postings,
                step="credit",
                description=f"Plan credit taken back by "
                f"{public_id(INVOICE_REFUND_PREFIX, refund.id)}",
                invoice=invoice.stripe_invoice_id,
                credit_share=share,
                shortfall=shortfall,
            )
        )

    async def release_hold(self, refund: InvoiceRefund) -> None:
        """Stripe did not refund: the held credit goes back to available."""
        await self._post_release(refund, refund.credit_hold, AccountKind.withdrawing)

    async def _revert(
        self, refund: InvoiceRefund, invoice: SubscriptionInvoice, now: datetime
    ) -> None:
        """The exact opposite of the settlement, with the subscriber's credit returned to
        available."""
        keys = [f"stripe:refund:{refund.stripe_refund_id}", f"invoice_refund:{refund.id}:credit"]
        await self._post_reverted(refund, keys, held=(AccountKind.withdrawing,))
        invoice.refunded_amount -= refund.amount
        invoice.credit_reversed -= refund.credit_share
