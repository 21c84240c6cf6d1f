"""Refunds of paid subscription invoices.

The same two-phase flow as pay-in refunds (:mod:`payments_api.refunds.service`), on
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
   first) is applied by :class:`InvoiceRefundSettlement`, once.

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

Refunds of an invoice charge made in the Stripe dashboard are recorded from the events
(origin ``stripe``) and settled the same way, without a hold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.audit.repository import AuditLogRepository
from payments_api.auth import Principal
from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.installation import outgoing_keys
from payments_api.kit.clock import utcnow
from payments_api.kit.idempotency import IdempotencyKeyReused, fingerprint
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.errors import InsufficientFunds
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.money import proportional_part
from payments_api.problems import ProblemError
from payments_api.refunds import metrics
from payments_api.refunds.errors import (
    RefundCurrencyMismatch,
    RefundExceedsRefundable,
    RefundNotFound,
    RefundRejected,
)
from payments_api.refunds.invoice_models import InvoiceRefund
from payments_api.refunds.repository import IN_FLIGHT
from payments_api.refunds.schemas import RefundCreate, RefundList, RefundRead
from payments_api.settings import Settings
from payments_api.stripe.errors import PaymentProviderError, PaymentProviderUnavailable
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.refs import stripe_id
from payments_api.subscriptions.models import SubscriptionInvoice
from payments_api.subscriptions.service import SubscriptionViews
from payments_api.subscriptions.tax import refund_tax_share, revenue_postings
from payments_api.users.repository import UserRepository

log = logging.getLogger(__name__)

INVOICE_REFUND_PREFIX = "rfi"


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


def _user(user_id: str, kind: AccountKind, currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.user(user_id, kind, currency)


def _platform(kind: AccountKind, currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.platform(kind, currency)


def invoice_refund_read(refund: InvoiceRefund, invoice: SubscriptionInvoice) -> RefundRead:
    return RefundRead(
        id=public_id(INVOICE_REFUND_PREFIX, refund.id),
        order_id=None,
        invoice_id=invoice.stripe_invoice_id,
        user_id=refund.user_id,
        amount=refund.amount,
        currency=refund.currency,
        status=refund.status,
        origin=refund.origin,
        reason=refund.reason,
        note=refund.note,
        requested_by=refund.requested_by,
        held_amount=refund.credit_hold if refund.status in IN_FLIGHT else 0,
        stripe_refund_id=refund.stripe_refund_id,
        failure_reason=refund.failure_reason,
        credit_taken_back=refund.credit_share,
        created_at=refund.created_at,
        succeeded_at=refund.succeeded_at,
    )


class InvoiceRefundRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, refund_id: int, *, for_update: bool = False) -> InvoiceRefund | None:
        stmt = select(InvoiceRefund).where(InvoiceRefund.id == refund_id)
        if for_update:
            stmt = stmt.with_for_update()
        result: InvoiceRefund | None = await self.session.scalar(
            stmt.execution_options(populate_existing=True)
        )
        return result

    async def by_stripe_id(self, stripe_refund_id: str) -> InvoiceRefund | None:
        result: InvoiceRefund | None = await self.session.scalar(
            select(InvoiceRefund).where(InvoiceRefund.stripe_refund_id == stripe_refund_id)
        )
        return result

    async def by_idempotency_key(self, actor_id: str, key: str) -> InvoiceRefund | None:
        result: InvoiceRefund | None = await self.session.scalar(
            select(InvoiceRefund).where(
                InvoiceRefund.requested_by == actor_id, InvoiceRefund.idempotency_key == key
            )
        )
        return result

    async def in_flight(self, invoice_id: int) -> tuple[int, int]:
        """Amount and credit hold of the invoice's refunds still in flight."""
        row = (
            await self.session.execute(
                select(
                    func.coalesce(func.sum(InvoiceRefund.amount), 0),
                    func.coalesce(func.sum(InvoiceRefund.credit_share), 0),
                ).where(InvoiceRefund.invoice_id == invoice_id, InvoiceRefund.status.in_(IN_FLIGHT))
            )
        ).one()
        return int(row[0]), int(row[1])

    async def insert_from_stripe(self, values: dict[str, Any]) -> None:
        await self.session.execute(
            insert(InvoiceRefund)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[InvoiceRefund.stripe_refund_id])
        )

    async def stuck(self, cutoff: datetime, limit: int) -> list[int]:
        rows = await self.session.scalars(
            select(InvoiceRefund.id)
            .where(
                InvoiceRefund.status == "pending",
                InvoiceRefund.stripe_refund_id.is_(None),
                InvoiceRefund.origin == "admin",
                InvoiceRefund.created_at < cutoff,
            )
            .order_by(InvoiceRefund.id)
            .limit(limit)
        )
        return list(rows)

    async def page(
        self, *, limit: int, before_id: int | None, invoice_id: int | None
    ) -> list[tuple[InvoiceRefund, SubscriptionInvoice]]:
        stmt = select(InvoiceRefund, SubscriptionInvoice).join(
            SubscriptionInvoice, SubscriptionInvoice.id == InvoiceRefund.invoice_id
        )
        if before_id is not None:
            stmt = stmt.where(InvoiceRefund.id < before_id)
        if invoice_id is not None:
            stmt = stmt.where(InvoiceRefund.invoice_id == invoice_id)
        rows = await self.session.execute(stmt.order_by(InvoiceRefund.id.desc()).limit(limit))
        return [(r[0], r[1]) for r in rows.all()]


class InvoiceLookup:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, invoice_id: int, *, for_update: bool = False) -> SubscriptionInvoice | None:
        stmt = select(SubscriptionInvoice).where(SubscriptionInvoice.id == invoice_id)
        if for_update:
            stmt = stmt.with_for_update()
        result: SubscriptionInvoice | None = await self.session.scalar(
            stmt.execution_options(populate_existing=True)
        )
        return result

    async def by_stripe_id(
        self, stripe_invoice_id: str, *, for_update: bool = False
    ) -> SubscriptionInvoice | None:
        stmt = select(SubscriptionInvoice).where(
            SubscriptionInvoice.stripe_invoice_id == stripe_invoice_id
        )
        if for_update:
            stmt = stmt.with_for_update()
        result: SubscriptionInvoice | None = await self.session.scalar(
            stmt.execution_options(populate_existing=True)
        )
        return result

    async def by_payment(
        self, *, payment_intent: str | None, charge: str | None
    ) -> SubscriptionInvoice | None:
        conditions = []
        if payment_intent:
            conditions.append(SubscriptionInvoice.stripe_payment_intent_id == payment_intent)
        if charge:
            conditions.append(SubscriptionInvoice.stripe_charge_id == charge)
        if not conditions:
            return None
        result: SubscriptionInvoice | None = await self.session.scalar(
            select(SubscriptionInvoice).where(or_(*conditions)).limit(1)
        )
        return result


def _credit_share(invoice: SubscriptionInvoice, amount: int, before: int) -> int:
    credited = invoice.credited_amount or 0
    if not credited or invoice.amount_paid <= 0:
        return 0
    before = min(before, invoice.amount_paid - amount)
    return proportional_part(amount, invoice.amount_paid, credited, before)


class InvoiceRefundSettlement:
    """Applies Stripe's word on a refund of an invoice's charge: the only code that moves
    the money of invoice refunds. Runs in the caller's transaction."""

    def __init__(
        self, session: AsyncSession, stripe: StripeGateway, *, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.session = session
        self.stripe = stripe
        self.now = now
        self.refunds = InvoiceRefundRepository(session)
        self.invoices = InvoiceLookup(session)
        self.ledger = ledger_service.LedgerService(session)

    async def apply(self, stripe_refund: dict[str, Any]) -> InvoiceRefund | None:
        """Apply a Stripe Refund, once; None when it is not about a subscription invoice
        (the pay-in refunds then have their turn)."""
        stripe_id = str(stripe_refund["id"])
        found = await self._locate(stripe_refund)
        if found is None:
            found = await self._record_external(stripe_refund)
            if found is None:
                return None
        # Lock invoice then refund, in that order everywhere.
        invoice = await self.invoices.get(found.invoice_id, for_update=True)
        refund = await self.refunds.get(found.id, for_update=True)
        if invoice is None or refund is None:  # pragma: no cover - foreign keys
            raise RuntimeError(f"invoice refund {found.id} lost its invoice")
        if refund.stripe_refund_id is None:
            refund.stripe_refund_id = stripe_id
        elif refund.stripe_refund_id != stripe_id:
            log.error("invoice refund %s is another Stripe refund; ignoring", refund.id)
            return refund
        await self._transition(refund, invoice, str(stripe_refund.get("status")), stripe_refund)
        return refund

    async def _locate(self, stripe_refund: dict[str, Any]) -> InvoiceRefund | None:
        existing = await self.refunds.by_stripe_id(str(stripe_refund["id"]))
        if existing is not None:
            return existing
        raw = (stripe_refund.get("metadata") or {}).get("invoice_refund_id")
        if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:
            ours = await self.refunds.get(int(raw))
            if ours is not None and ours.stripe_refund_id in (None, stripe_refund["id"]):
                return ours
        return None

    async def _record_external(self, stripe_refund: dict[str, Any]) -> InvoiceRefund | None:
        """A refund of an invoice's charge made without our API (the dashboard)."""
        invoice = await self.invoices.by_payment(
            payment_intent=stripe_id(stripe_refund.get("payment_intent")),
            charge=stripe_id(stripe_refund.get("charge")),
        )
        if invoice is None:
            return None
        currency = str(stripe_refund.get("currency", invoice.currency)).lower()
        if currency != invoice.currency:
            raise ValueError(f"refund {stripe_refund['id']} is in {currency}, not the invoice's")
        await self.refunds.insert_from_stripe(
            {
                "invoice_id": invoice.id,
                "user_id": invoice.user_id,
                "amount": int(stripe_refund["amount"]),
                "currency": currency,
                "status": "pending",
                "origin": "stripe",
                "reason": stripe_refund.get("reason"),
                "stripe_refund_id": str(stripe_refund["id"]),
            }
        )
        metrics.REFUNDS.labels(origin="stripe", outcome="recorded").inc()
        log.warning(
            "refund %s of invoice %s was made outside the API; recording it",
            stripe_refund["id"],
            invoice.stripe_invoice_id,
        )
        return await self.refunds.by_stripe_id(str(stripe_refund["id"]))

    async def _transition(
        self,
        refund: InvoiceRefund,
        invoice: SubscriptionInvoice,
        status: str,
        stripe_refund: dict[str, Any],
    ) -> None:
        now = self.now()
        if status in IN_FLIGHT:
            if refund.status in IN_FLIGHT and refund.status != status:
                refund.status, refund.updated_at = status, now
            return
        if status == "succeeded":
            if refund.status in IN_FLIGHT:
                await self._settle(refund, invoice)
                refund.status, refund.succeeded_at, refund.updated_at = "succeeded", now, now
                metrics.REFUNDS.labels(origin=refund.origin, outcome="succeeded").inc()
                await self._emit(refund, invoice, EventType.refund_succeeded, "succeeded")
                await emit(
                    self.session,
                    EventType.invoice_refunded,
                    SubscriptionViews.invoice(invoice),
                    change_key=f"invoice:{invoice.stripe_invoice_id}:refunded:{refund.id}",
                    user_ids=[invoice.user_id],
                )
            elif refund.status != "succeeded":
                log.warning("invoice refund %s is %s; stale succeeded", refund.id, refund.status)
            return
        if status in ("failed", "canceled"):
            if refund.status in IN_FLIGHT:
                await self.release_hold(refund)
            elif refund.status == "succeeded":
                await self._undo(refund, invoice)
            else:
                return
            refund.status, refund.updated_at = status, now
            refund.failure_reason = str(stripe_refund.get("failure_reason") or status)[:64]
            metrics.REFUNDS.labels(origin=refund.origin, outcome=status).inc()
            await self._emit(refund, invoice, EventType.refund_failed, "failed")
            return
        log.warning("invoice refund %s: unknown Stripe status %r ignored", refund.id, status)

    async def _emit(
        self, refund: InvoiceRefund, invoice: SubscriptionInvoice, kind: EventType, what: str
    ) -> None:
        await emit(
            self.session,
            kind,
            invoice_refund_read(refund, invoice),
            change_key=f"invoice_refund:{refund.id}:{what}",
            user_ids=[refund.user_id],
        )

    async def _settle(self, refund: InvoiceRefund, invoice: SubscriptionInvoice) -> None:
        currency, amount = refund.currency, refund.amount
        # The tax goes back with the refund in proportion: what the authority is owed
        # shrinks with what the customer paid.
        tax = refund_tax_share(
            amount, invoice.amount_paid, invoice.tax_amount or 0, invoice.refunded_amount
        )
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="invoice_refund",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:refund:{refund.stripe_refund_id}",
                description=f"Refund {public_id(INVOICE_REFUND_PREFIX, refund.id)} of invoice "
                f"{invoice.stripe_invoice_id}",
                metadata={
                    "invoice_refund_id": refund.id,
                    "invoice": invoice.stripe_invoice_id,
                    "refund": refund.stripe_refund_id,
                },
                postings=[
                    *(
                        ledger_service.PostingSpec(posting.account, -posting.amount)
                        for posting in revenue_postings(amount, tax, currency)
                    ),
                    ledger_service.PostingSpec(
                        _platform(AccountKind.stripe_balance, currency), amount
                    ),
                ],
            )
        )
        share = _credit_share(invoice, amount, invoice.refunded_amount)
        share = min(share, (invoice.credited_amount or 0) - invoice.credit_reversed)
        invoice.refunded_amount += amount
        invoice.credit_reversed += share
        invoice.updated_at = self.now()
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
                    _user(refund.user_id, AccountKind.available, currency)
                ),
            )
        from_available = min(available, rest)
        shortfall = rest - from_available
        postings = []
        if hold:
            postings.append(
                ledger_service.PostingSpec(
                    _user(refund.user_id, AccountKind.withdrawing, currency), -hold
                )
            )
        back_to_available = (hold - from_hold) - from_available
        if back_to_available:
            postings.append(
                ledger_service.PostingSpec(
                    _user(refund.user_id, AccountKind.available, currency), back_to_available
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
                ledger_service.PostingSpec(_platform(AccountKind.adjustments, currency), -shortfall)
            )
        if share:
            postings.append(
                ledger_service.PostingSpec(_platform(AccountKind.sales, currency), share)
            )
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="invoice_refund_credit",
                cause_type=CauseType.system,
                cause_key=f"invoice_refund:{refund.id}:credit",
                description=f"Plan credit taken back by "
                f"{public_id(INVOICE_REFUND_PREFIX, refund.id)}",
                metadata={
                    "invoice_refund_id": refund.id,
                    "invoice": invoice.stripe_invoice_id,
                    "credit_share": share,
                    "shortfall": shortfall,
                },
                postings=postings,
            )
        )

    async def release_hold(self, refund: InvoiceRefund) -> None:
        """Stripe did not refund: the held credit goes back to available."""
        if not refund.credit_hold:
            return
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="refund_release",
                cause_type=CauseType.system,
                cause_key=f"invoice_refund:{refund.id}:release",
                description=f"Refund {public_id(INVOICE_REFUND_PREFIX, refund.id)} did not happen",
                metadata={"invoice_refund_id": refund.id},
                postings=[
                    ledger_service.PostingSpec(
                        _user(refund.user_id, AccountKind.withdrawing, refund.currency),
                        -refund.credit_hold,
                    ),
                    ledger_service.PostingSpec(
                        _user(refund.user_id, AccountKind.available, refund.currency),
                        refund.credit_hold,
                    ),
                ],
            )
        )

    async def _undo(self, refund: InvoiceRefund, invoice: SubscriptionInvoice) -> None:
        """Stripe could not deliver a refund it had reported succeeded: the exact opposite
        of the settlement, with the subscriber's credit returned to available."""
        keys = [f"stripe:refund:{refund.stripe_refund_id}", f"invoice_refund:{refund.id}:credit"]
        postings: list[ledger_service.PostingSpec] = []
        for cause_key in keys:
            settled = await self.ledger.repository.get_transaction(cause_key=cause_key)
            if settled is None:
                continue
            for posting in settled.postings:
                kind = AccountKind(posting.kind)
                if kind == AccountKind.withdrawing:
                    kind = AccountKind.available
                postings.append(
                    ledger_service.PostingSpec(
                        ledger_service.AccountRef(kind, posting.currency, posting.owner_user_id),
                        -posting.amount,
                    )
                )
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="refund_failed",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:refund_failed:{refund.stripe_refund_id}",
                description=f"Refund {public_id(INVOICE_REFUND_PREFIX, refund.id)} failed "
                "after succeeding",
                metadata={"invoice_refund_id": refund.id, "refund": refund.stripe_refund_id},
                postings=postings,
            )
        )
        invoice.refunded_amount -= refund.amount
        invoice.credit_reversed -= refund.credit_share


class InvoiceRefundService:
    """Admin refunds of invoices: reserve, ask Stripe, apply the answer."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeGateway,
        settings: Settings,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe
        self.settings = settings
        self.now = now

    async def create(
        self,
        principal: Principal,
        body: RefundCreate,
        idempotency_key: str,
        *,
        request_id: str | None,
    ) -> tuple[RefundRead, bool]:
        refund = await self.reserve(principal, body, idempotency_key, request_id=request_id)
        if refund.status == "pending" and refund.stripe_refund_id is None:
            refund = await self.submit(refund.id)
        if refund.failure_reason == "provider_rejected":
            raise RefundRejected(
                "The payment provider refused the refund; nothing was refunded.",
                refund_id=public_id(INVOICE_REFUND_PREFIX, refund.id),
            )
        async with self.sessionmaker.begin() as session:
            invoice = await InvoiceLookup(session).get(refund.invoice_id)
            assert invoice is not None  # noqa: S101 - foreign key
            read = invoice_refund_read(refund, invoice)
        known = refund.stripe_refund_id is not None or refund.status not in IN_FLIGHT
        return read, known

    async def _ensure_payment(self, invoice_id: str) -> None:
        """Invoices booked before their PaymentIntent was kept: look it up once."""
        async with self.sessionmaker.begin() as session:
            invoice = await InvoiceLookup(session).by_stripe_id(invoice_id)
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
                row.stripe_payment_intent_id = stripe_id(charge.get("payment_intent"))

    async def reserve(
        self,
        principal: Principal,
        body: RefundCreate,
        idempotency_key: str,
        *,
        request_id: str | None,
    ) -> InvoiceRefund:
        assert body.invoice_id is not None  # noqa: S101 - the router checks
        request_fingerprint = fingerprint(body.model_dump(mode="json"))
        async with self.sessionmaker.begin() as session:
            actor = await UserRepository(session).upsert_from_principal(principal)
            existing = await InvoiceRefundRepository(session).by_idempotency_key(
                actor.id, idempotency_key
            )
            if existing is not None:
                if existing.request_fingerprint != request_fingerprint:
                    raise IdempotencyKeyReused("This Idempotency-Key was used for another refund.")
                return existing
        await self._ensure_payment(body.invoice_id)
        async with self.sessionmaker.begin() as session:
            actor = await UserRepository(session).upsert_from_principal(principal)
            invoice = await InvoiceLookup(session).by_stripe_id(body.invoice_id, for_update=True)
            if invoice is None:
                raise InvoiceNotFound(f"No subscription invoice {body.invoice_id!r}.")
            return await self._reserve(
                session,
                invoice,
                body,
                actor_id=actor.id,
                idempotency_key=idempotency_key,
                request_fingerprint=request_fingerprint,
                request_id=request_id,
            )

    async def _reserve(
        self,
        session: AsyncSession,
        invoice: SubscriptionInvoice,
        body: RefundCreate,
        *,
        actor_id: str,
        idempotency_key: str,
        request_fingerprint: str,
        request_id: str | None,
    ) -> InvoiceRefund:
        refunds = InvoiceRefundRepository(session)
        twin = await refunds.by_idempotency_key(actor_id, idempotency_key)
        if twin is not None:
            if twin.request_fingerprint != request_fingerprint:
                raise IdempotencyKeyReused()
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
        amount = body.amount if body.amount is not None else refundable
        if refundable <= 0 or amount > refundable:
            raise RefundExceedsRefundable(
                f"At most {max(refundable, 0)} {invoice.currency} minor units can still be "
                f"refunded on {invoice.stripe_invoice_id}.",
                refundable=max(refundable, 0),
                requested=amount,
                currency=invoice.currency,
            )
        share = _credit_share(invoice, amount, invoice.refunded_amount + in_flight)
        ledger = ledger_service.LedgerService(session)
        wallet = _user(invoice.user_id, AccountKind.available, invoice.currency)
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
            reason=body.reason,
            note=body.note,
            requested_by=actor_id,
            idempotency_key=idempotency_key,
            request_fingerprint=request_fingerprint,
            forced=body.force,
            credit_share=share,
            credit_hold=hold,
            stripe_attempts=0,
        )
        try:
            async with session.begin_nested():
                session.add(refund)
                await session.flush()
        except IntegrityError:
            twin = await refunds.by_idempotency_key(actor_id, idempotency_key)
            if twin is None or twin.request_fingerprint != request_fingerprint:
                raise IdempotencyKeyReused() from None
            return twin
        if hold:
            try:
                await ledger.post(
                    ledger_service.NewTransaction(
                        type="refund_hold",
                        cause_type=CauseType.system,
                        cause_key=f"invoice_refund:{refund.id}:hold",
                        description=f"Plan credit held for "
                        f"{public_id(INVOICE_REFUND_PREFIX, refund.id)}",
                        metadata={"invoice_refund_id": refund.id},
                        postings=[
                            ledger_service.PostingSpec(wallet, -hold),
                            ledger_service.PostingSpec(
                                _user(invoice.user_id, AccountKind.withdrawing, invoice.currency),
                                hold,
                            ),
                        ],
                    )
                )
            except InsufficientFunds as exc:
                raise RefundCreditSpent(
                    "The subscriber spent the plan credit meanwhile.",
                    credit_share=share,
                    currency=invoice.currency,
                ) from exc
        await AuditLogRepository(session).record(
            actor_id=actor_id,
            action="refund.create",
            target_type="refund",
            target_id=public_id(INVOICE_REFUND_PREFIX, refund.id),
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
            reason=body.note or body.reason,
            request_id=request_id,
        )
        metrics.REFUNDS.labels(origin="admin", outcome="requested").inc()
        return refund

    async def submit(self, refund_id: int, *, look_up_first: bool = False) -> InvoiceRefund:
        async with self.sessionmaker.begin() as session:
            refund = await InvoiceRefundRepository(session).get(refund_id, for_update=True)
            if refund is None:
                raise RefundNotFound()
            if refund.status != "pending" or refund.stripe_refund_id is not None:
                return refund
            invoice = await InvoiceLookup(session).get(refund.invoice_id)
            if invoice is None or invoice.stripe_payment_intent_id is None:  # pragma: no cover
                raise RuntimeError(f"invoice refund {refund_id} has no payment to refund")
            refund.stripe_attempts += 1
            refund.updated_at = self.now()
            payment_intent = invoice.stripe_payment_intent_id
            stripe_invoice = invoice.stripe_invoice_id
        stripe_refund: dict[str, Any] | None = None
        try:
            if look_up_first:
                for candidate in await self.stripe.list_refunds(payment_intent=payment_intent):
                    metadata = candidate.get("metadata") or {}
                    if metadata.get("invoice_refund_id") == str(refund_id):
                        stripe_refund = candidate
                        break
            if stripe_refund is None:
                stripe_refund = await self.stripe.create_refund(
                    payment_intent=payment_intent,
                    amount=refund.amount,
                    reason=refund.reason,
                    metadata={"invoice_refund_id": str(refund.id), "invoice": stripe_invoice},
                    idempotency_key=(await outgoing_keys(self.sessionmaker)).derive(
                        "invoice_refund", refund.id
                    ),
                )
        except PaymentProviderUnavailable:
            log.warning("invoice refund %s: Stripe unavailable, will retry", refund_id)
            return refund
        except PaymentProviderError:
            return await self._rejected(refund_id)
        async with self.sessionmaker.begin() as session:
            applied = await InvoiceRefundSettlement(session, self.stripe, now=self.now).apply(
                stripe_refund
            )
            if applied is None:  # pragma: no cover - metadata always names it
                raise RuntimeError(f"Stripe refund {stripe_refund.get('id')} not applied")
            return applied

    async def _rejected(self, refund_id: int) -> InvoiceRefund:
        async with self.sessionmaker.begin() as session:
            settlement = InvoiceRefundSettlement(session, self.stripe, now=self.now)
            found = await settlement.refunds.get(refund_id)
            if found is None:  # pragma: no cover
                raise RefundNotFound()
            invoice = await settlement.invoices.get(found.invoice_id, for_update=True)
            refund = await settlement.refunds.get(refund_id, for_update=True)
            if refund is None or invoice is None:  # pragma: no cover
                raise RefundNotFound()
            if refund.status == "pending" and refund.stripe_refund_id is None:
                await settlement.release_hold(refund)
                refund.status, refund.failure_reason = "failed", "provider_rejected"
                refund.updated_at = self.now()
                metrics.REFUNDS.labels(origin="admin", outcome="rejected").inc()
                await settlement._emit(refund, invoice, EventType.refund_failed, "failed")
            return refund

    async def recover(self, *, limit: int = 50) -> int:
        """Finish invoice refunds stuck before Stripe's answer (timeouts, crashes)."""
        cutoff = self.now() - timedelta(seconds=self.settings.refund_recovery_after_seconds)
        async with self.sessionmaker.begin() as session:
            stuck = await InvoiceRefundRepository(session).stuck(cutoff, limit)
        for refund_id in stuck:
            try:
                await self.submit(refund_id, look_up_first=True)
            except Exception:
                log.exception("invoice refund %s: recovery failed", refund_id)
        return len(stuck)


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
