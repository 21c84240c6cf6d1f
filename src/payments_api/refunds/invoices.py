"""Refunds of paid subscription invoices.

The same two-phase flow as pay-in refunds (:mod:`payments_api.refunds.two_phase`), on
their own table (an invoice is not an order):

1. one transaction locks the invoice, checks what is still refundable (paid less
   refunded less in flight), computes the part of the plan credit the refund takes back
   and holds it from the subscriber's available balance (``available -> withdrawing``),
   writes the ``pending`` refund and the audit entry. When the subscriber no longer holds
   that credit the request is refused (``refund_credit_spent``) unless ``force`` is set:
   then what the wallet still holds is held, and the platform bears the rest;
2. Stripe is asked to refund the invoice's PaymentIntent with the idempotency key
   ``<namespace>:invoice_refund:{id}`` and no transaction open; a timeout leaves the
   refund pending for the recovery job, which looks for it at Stripe first;
3. Stripe's answer (or its ``refund.*`` / ``charge.refunded`` events, whichever comes
   first) is applied by :class:`~payments_api.refunds.invoice_settlement.InvoiceRefundSettlement`,
   once (what it books is described there).

Refunds of an invoice charge made in the Stripe dashboard are recorded from the events
(origin ``stripe``) and settled the same way, without a hold.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.errors import InsufficientFunds
from payments_api.ledger.kinds import AccountKind
from payments_api.orders.refund_errors import RefundCurrencyMismatch, RefundNotFound
from payments_api.problems import ProblemError
from payments_api.refunds import metrics
from payments_api.refunds.admin_request import (
    KEY_USED_FOR_ANOTHER,
    AdminRefundRequest,
    AdminRefunds,
    RefundAsk,
    RefundedPayment,
)
from payments_api.refunds.invoice_models import InvoiceRefund
from payments_api.refunds.invoice_repository import InvoiceLookup, InvoiceRefundRepository
from payments_api.refunds.invoice_settlement import (
    INVOICE_REFUND_PREFIX,
    InvoiceRefundSettlement,
    credit_share,
    invoice_refund_read,
)
from payments_api.refunds.refund_ledger import hold_transaction, user_account
from payments_api.refunds.schemas import RefundCreate, RefundList, RefundRead
from payments_api.refunds.two_phase import amount_to_refund
from payments_api.subscriptions.models import SubscriptionInvoice

log = logging.getLogger(__name__)

__all__ = ["INVOICE_REFUND_PREFIX", "InvoiceRefundQueries", "InvoiceRefundService"]


class InvoiceNotFound(ProblemError):
    status = 404
    code = "invoice_not_found"
    title = "No such subscription invoice"


class InvoiceNotRefundable(ProblemError):
    status = 409
    code = "invoice_not_refundable"
    title = "The invoice has no paid charge to refund"


class RefundCreditSpent(ProblemError):
    status = 409
    code = "refund_credit_spent"
    title = "The subscriber has spent the plan credit this refund would take back"


class InvoiceRefundService(AdminRefunds[InvoiceRefund]):
    """Admin refunds of invoices: reserve, ask Stripe, apply the answer."""

    label = "invoice refund"
    table = "invoice_refund"
    public_prefix = INVOICE_REFUND_PREFIX

    async def read(self, refund: InvoiceRefund) -> RefundRead:
        async with self.sessionmaker.begin() as session:
            invoice = await InvoiceLookup(session).get(refund.invoice_id)
            assert invoice is not None  # noqa: S101 - foreign key
            return invoice_refund_read(refund, invoice)

    async def _ensure_payment(self, invoice_id: str) -> None:
        """Invoices booked before their PaymentIntent was kept: look it up once."""
        async with self.sessionmaker.begin() as session:
            invoice = await InvoiceLookup(session).by_stripe_id(invoice_id, for_update=False)
            if invoice is None or invoice.stripe_payment_intent_id or invoice.status != "paid":
                return
        charge_id = await self.stripe.invoice_charge(invoice_id)
        if charge_id is None:
            return
        charge = await self.stripe.retrieve_charge(charge_id)
        async with self.sessionmaker.begin() as session:
            row = await InvoiceLookup(session).by_stripe_id(invoice_id, for_update=True)
            if row is not None and row.stripe_payment_intent_id is None:
                row.stripe_charge_id = charge_id
                row.stripe_payment_intent_id = charge.payment_intent

    async def reserve(self, ask: RefundAsk) -> InvoiceRefund:
        body = ask.body
        assert body.invoice_id is not None  # noqa: S101 - the router checks
        async with self.sessionmaker.begin() as session:
            request = await AdminRefundRequest.of(session, ask)
            existing = await request.replayed(
                InvoiceRefundRepository(session), KEY_USED_FOR_ANOTHER
            )
            if existing is not None:
                return existing
        await self._ensure_payment(body.invoice_id)
        async with self.sessionmaker.begin() as session:
            invoice = await InvoiceLookup(session).by_stripe_id(body.invoice_id, for_update=True)
            if invoice is None:
                raise InvoiceNotFound(f"No subscription invoice {body.invoice_id!r}.")
            return await self._reserve(session, invoice, body, request)

    async def _reserve(
        self,
        session: AsyncSession,
        invoice: SubscriptionInvoice,
        body: RefundCreate,
        request: AdminRefundRequest,
    ) -> InvoiceRefund:
        refunds = InvoiceRefundRepository(session)
        twin = await request.replayed(refunds)
        if twin is not None:
            return twin
        if body.currency is not None and body.currency != invoice.currency:
            raise RefundCurrencyMismatch(
                f"Invoice {invoice.stripe_invoice_id} is in {invoice.currency}.",
                currency=invoice.currency,
            )
        if invoice.status != "paid" or invoice.amount_paid <= 0:
            raise InvoiceNotRefundable(
                f"Invoice {invoice.stripe_invoice_id} is {invoice.status} with "
                f"{invoice.amount_paid} paid.",
                invoice_status=invoice.status,
            )
        if invoice.stripe_payment_intent_id is None:
            raise InvoiceNotRefundable(
                f"Invoice {invoice.stripe_invoice_id} was paid without a card charge."
            )
        in_flight, _held = await refunds.in_flight(invoice.id)
        refundable = invoice.amount_paid - invoice.refunded_amount - in_flight
        amount = amount_to_refund(
            body.amount, refundable, invoice.currency, invoice.stripe_invoice_id
        )
        share = credit_share(invoice, amount, invoice.refunded_amount + in_flight)
        ledger = ledger_service.LedgerService(session)
        wallet = user_account(invoice.user_id, AccountKind.available, invoice.currency)
        available = await ledger.balance_of(wallet) if share else 0
        if share > available and not body.force:
            raise RefundCreditSpent(
                f"The subscriber holds {max(available, 0)} {invoice.currency} minor units; "
                f"this refund takes back {share} of the plan credit. Pass force to refund "
                "anyway (the platform bears the spent part).",
                available=max(available, 0),
                credit_share=share,
                currency=invoice.currency,
            )
        hold = max(0, min(share, available))
        refund = InvoiceRefund(
            invoice_id=invoice.id,
            user_id=invoice.user_id,
            amount=amount,
            currency=invoice.currency,
            status="pending",
            origin="admin",
            forced=body.force,
            credit_share=share,
            credit_hold=hold,
            stripe_attempts=0,
            **request.row_fields(),
        )
        added = await request.add_once(session, refund, refunds)
        if added is not refund:
            return added
        if hold:
            try:
                await ledger.post(
                    hold_transaction(
                        refund,
                        hold,
                        description=f"Plan credit held for "
                        f"{public_id(INVOICE_REFUND_PREFIX, refund.id)}",
                    )
                )
            except InsufficientFunds as exc:
                raise RefundCreditSpent(
                    "The subscriber spent the plan credit meanwhile.",
                    credit_share=share,
                    currency=invoice.currency,
                ) from exc
        await request.audit(
            session,
            public_id(INVOICE_REFUND_PREFIX, refund.id),
            before={
                "invoice": invoice.stripe_invoice_id,
                "amount_paid": invoice.amount_paid,
                "refunded_amount": invoice.refunded_amount,
                "in_flight": in_flight,
                "customer_available": available,
            },
            after={
                "refund": {
                    "id": public_id(INVOICE_REFUND_PREFIX, refund.id),
                    "amount": amount,
                    "currency": invoice.currency,
                    "credit_share": share,
                    "credit_hold": hold,
                    "forced": body.force,
                },
            },
        )
        metrics.REFUNDS.labels(origin="admin", outcome="requested").inc()
        return refund

    def settlement(self, session: AsyncSession) -> InvoiceRefundSettlement:
        return InvoiceRefundSettlement(session, self.stripe, now=self.now)

    async def refunded_payment(
        self, session: AsyncSession, refund: InvoiceRefund
    ) -> RefundedPayment:
        invoice = await InvoiceLookup(session).get(refund.invoice_id)
        if invoice is None or invoice.stripe_payment_intent_id is None:  # pragma: no cover
            raise RuntimeError(f"invoice refund {refund.id} has no payment to refund")
        metadata = {"invoice": invoice.stripe_invoice_id}
        return RefundedPayment(invoice.stripe_payment_intent_id, metadata)

    async def stuck(self, session: AsyncSession, cutoff: datetime, limit: int) -> list[int]:
        return await InvoiceRefundRepository(session).stuck(cutoff, limit)


class InvoiceRefundQueries:
    def __init__(self, session: AsyncSession) -> None:
        self.repository = InvoiceRefundRepository(session)
        self.invoices = InvoiceLookup(session)

    async def get(self, refund_id: str) -> RefundRead:
        number = parse_public_id(INVOICE_REFUND_PREFIX, refund_id)
        refund = await self.repository.get(number) if number is not None else None
        invoice = await self.invoices.get(refund.invoice_id) if refund is not None else None
        if refund is None or invoice is None:
            raise RefundNotFound()
        return invoice_refund_read(refund, invoice)

    async def list(self, *, limit: int, starting_after: str | None, invoice_id: str) -> RefundList:
        invoice = await self.invoices.by_stripe_id(invoice_id)
        if invoice is None:
            return RefundList(data=[], has_more=False)
        rows = await self.repository.page(
            limit=limit + 1,
            before_id=parse_cursor(INVOICE_REFUND_PREFIX, starting_after),
            invoice_id=invoice.id,
        )
        return RefundList(
            data=[invoice_refund_read(r, i) for r, i in rows[:limit]], has_more=len(rows) > limit
        )
