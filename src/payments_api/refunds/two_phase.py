"""The two-phase refund flow shared by refunds of orders (``service``/``settlement``)
and of subscription invoices (``invoices``/``invoice_settlement``): each variant keeps
only what differs (its rows, what it books, the events it emits).

1. the variant's service reserves the refund in one transaction (``pending``);
2. :meth:`TwoPhaseRefunds.submit` asks Stripe with no transaction open (the same key on
   every retry; recovery looks for the refund at Stripe first), on the Stripe operation
   skeleton (:class:`RefundSubmission`, ``kit/stripe_operation.py``);
3. :meth:`RefundSettlementFlow.apply` applies Stripe's answer (the API's, or the
   ``refund.*``/``charge.refunded`` events'), once: both lock the parent (order or
   invoice) and then the refund row.

The Stripe calls are the small functions :func:`find_stripe_refund` and
:func:`create_stripe_refund`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.pagination import public_id
from payments_api.kit.stripe_flow import StripeFlow
from payments_api.kit.stripe_operation import UNKNOWN, Attempt, StripeOperation, Unknown
from payments_api.kit.stripe_settlement import StripeSettlement
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.orders.purposes import StripeRefundOptions
from payments_api.orders.refund_errors import (
    RefundExceedsRefundable,
    RefundNotFound,
    RefundRejected,
)
from payments_api.orders.refund_models import Refund
from payments_api.orders.refund_repository import IN_FLIGHT
from payments_api.refunds import metrics
from payments_api.refunds.invoice_models import InvoiceRefund
from payments_api.refunds.refund_ledger import refund_transaction, wallet_move
from payments_api.stripe.errors import PaymentProviderError, PaymentProviderUnavailable
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import Refund as StripeRefund

log = logging.getLogger(__name__)


RowT = TypeVar("RowT", Refund, InvoiceRefund)
"""A refund row: of an order or of a subscription invoice (both tables have the columns
the shared steps read and write)."""
ParentT = TypeVar("ParentT")
RowT_co = TypeVar("RowT_co", covariant=True)


class RefundRows(Protocol[RowT_co]):
    """A variant's refund table (its repository)."""

    async def get(self, refund_id: int, *, for_update: bool = False) -> RowT_co | None: ...

    async def by_stripe_id(self, stripe_refund_id: str) -> RowT_co | None: ...

    async def insert_from_stripe(self, values: dict[str, Any]) -> None: ...


def reversed_postings(
    settled: Any, *, held: tuple[AccountKind, ...]
) -> list[ledger_service.PostingSpec]:
    """The exact opposite of a settled ledger transaction's postings, with what came out
    of a hold (``held`` kinds, gone since) returned to the owner's available."""
    postings = []
    for posting in settled.postings:
        kind = AccountKind(posting.kind)
        if kind in held:
            kind = AccountKind.available
        postings.append(
            ledger_service.PostingSpec(
                ledger_service.AccountRef(kind, posting.currency, posting.owner_user_id),
                -posting.amount,
            )
        )
    return postings


# -- step 1, the steps every reservation shares -----------------------------------------


def amount_to_refund(requested: int | None, refundable: int, currency: str, of: str) -> int:
    """The amount asked (all that is refundable when none was), refused beyond what
    ``of`` still allows."""
    amount = requested if requested is not None else refundable
    if refundable <= 0 or amount > refundable:
        raise RefundExceedsRefundable(
            f"At most {max(refundable, 0)} {currency} minor units can still be refunded on {of}.",
            refundable=max(refundable, 0),
            requested=amount,
            currency=currency,
        )
    return amount


def answer_known(refund: Refund | InvoiceRefund) -> bool:
    """Whether Stripe's answer on the refund is known (else the API answers 202)."""
    return refund.stripe_refund_id is not None or refund.status not in IN_FLIGHT


class RefundSettlementFlow(StripeSettlement, ABC, Generic[RowT, ParentT]):
    """Applies Stripe's word on a refund, once. A variant says how to find its rows and
    parents, what a success books and emits, and what a failure undoes."""

    label = "refund"
    public_prefix = "rfd"
    metadata_key = "refund_id"
    """The Stripe Refund's (and the ledger's) metadata naming our row."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = ledger_service.LedgerService(self.session)
        self.refunds: RefundRows[RowT] = self._rows()

    async def row(self, refund_id: int, *, for_update: bool = False) -> RowT | None:
        return await self.refunds.get(refund_id, for_update=for_update)

    async def row_by_stripe_id(self, stripe_refund_id: str) -> RowT | None:
        return await self.refunds.by_stripe_id(stripe_refund_id)

    # -- what a variant says -------------------------------------------------------------

    @abstractmethod
    def _rows(self) -> RefundRows[RowT]:
        """The variant's refund table, in this session."""
        ...

    @abstractmethod
    async def parent_of(self, refund: RowT, *, for_update: bool = False) -> ParentT | None: ...

    @abstractmethod
    async def _record_external(self, stripe_refund: StripeRefund) -> RowT | None:
        """A refund made without our API (the Stripe dashboard): recorded as ours, or
        None when it is not about this variant's payments."""
        ...

    @abstractmethod
    async def _settle(self, refund: RowT, parent: ParentT, now: datetime) -> None:
        """Stripe refunded: book it (the refund is still in flight)."""
        ...

    @abstractmethod
    async def release_hold(self, refund: RowT) -> None:
        """Stripe did not refund: what the refund held goes back."""
        ...

    @abstractmethod
    async def _revert(self, refund: RowT, parent: ParentT, now: datetime) -> None:
        """Stripe could not deliver a refund it had reported succeeded."""
        ...

    @abstractmethod
    async def _emit_succeeded(self, refund: RowT, parent: ParentT) -> None: ...

    @abstractmethod
    async def emit_failed(self, refund: RowT, parent: ParentT) -> None: ...

    async def after_change(self, refund: RowT) -> None:
        """After the refund became final (a cash-out made of it is refreshed)."""
        return None

    # -- the shared steps ----------------------------------------------------------------

    async def apply(self, stripe_refund: StripeRefund) -> RowT | None:
        """Apply a Stripe Refund object (an API answer or an event's object), once.

        Returns our refund, or None when the refund is not about this variant's payments.
        """
        stripe_id = stripe_refund.id
        found = await self._locate(stripe_refund)
        if found is None:
            found = await self._record_external(stripe_refund)
            if found is None:
                return None
        # Lock parent then refund, in that order everywhere (API result, events, recovery).
        parent = await self.parent_of(found, for_update=True)
        refund = await self.row(found.id, for_update=True)
        if parent is None or refund is None:  # pragma: no cover - foreign keys guarantee them
            raise RuntimeError(f"{self.label} {found.id} lost what it refunds")
        if refund.stripe_refund_id is None:
            refund.stripe_refund_id = stripe_id
        elif refund.stripe_refund_id != stripe_id:
            log.error(
                "%s %s is %s at Stripe, not %s; ignoring",
                self.label,
                refund.id,
                refund.stripe_refund_id,
                stripe_id,
            )
            return refund
        await self._transition(refund, parent, stripe_refund.status, stripe_refund)
        return refund

    async def _locate(self, stripe_refund: StripeRefund) -> RowT | None:
        existing = await self.row_by_stripe_id(stripe_refund.id)
        if existing is not None:
            return existing
        raw = stripe_refund.metadata.get(self.metadata_key)
        if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:
            # Our refund whose API answer has not been recorded yet (the event won the race).
            ours = await self.row(int(raw))
            if ours is not None and ours.stripe_refund_id in (None, stripe_refund.id):
                return ours
        return None

    async def _record(
        self, stripe_refund: StripeRefund, currency: str, values: dict[str, Any], of: str
    ) -> RowT | None:
        """Record a dashboard refund of ``of`` (whose currency is ``currency``) as ours:
        ``values`` are the row's, less what comes from the Stripe Refund."""
        refund_currency = stripe_refund.currency.lower()
        if refund_currency != currency:
            raise ValueError(
                f"refund {stripe_refund.id} is in {refund_currency}, {of} in {currency}"
            )
        await self.refunds.insert_from_stripe(
            {
                **values,
                "amount": stripe_refund.amount,
                "currency": refund_currency,
                "status": "pending",
                "origin": "stripe",
                "reason": stripe_refund.reason,
                "stripe_refund_id": stripe_refund.id,
            }
        )
        metrics.REFUNDS.labels(origin="stripe", outcome="recorded").inc()
        log.warning("refund %s of %s was made outside the API; recording it", stripe_refund.id, of)
        return await self.row_by_stripe_id(stripe_refund.id)

    async def _transition(
        self, refund: RowT, parent: ParentT, status: str, stripe_refund: StripeRefund
    ) -> None:
        now = self.now()
        if status in IN_FLIGHT:
            if refund.status in IN_FLIGHT and refund.status != status:
                refund.status, refund.updated_at = status, now
            return
        if status == "succeeded":
            if refund.status in IN_FLIGHT:
                await self._settle(refund, parent, now)
                refund.status, refund.succeeded_at, refund.updated_at = "succeeded", now, now
                await self._count_succeeded(refund, parent, now)
                metrics.REFUNDS.labels(origin=refund.origin, outcome="succeeded").inc()
                await self._emit_succeeded(refund, parent)
                await self.after_change(refund)
            elif refund.status != "succeeded":
                # failed and canceled are final at Stripe: a late "succeeded" is stale.
                log.warning(
                    "%s %s is %s; ignoring Stripe's succeeded", self.label, refund.id, refund.status
                )
            return
        if status in ("failed", "canceled"):
            reason = (stripe_refund.failure_reason or status)[:64]
            if refund.status in IN_FLIGHT:
                await self.release_hold(refund)
            elif refund.status == "succeeded":
                # e.g. a closed card: the money is back at Stripe, so back where it came from.
                await self._revert(refund, parent, now)
            else:
                return
            refund.status, refund.failure_reason, refund.updated_at = status, reason, now
            metrics.REFUNDS.labels(origin=refund.origin, outcome=status).inc()
            await self.emit_failed(refund, parent)
            await self.after_change(refund)
            return
        log.warning("%s %s: unknown Stripe status %r ignored", self.label, refund.id, status)

    async def _post_release(self, refund: RowT, held: int, kind: AccountKind) -> None:
        """The ``held`` part of a refund that did not happen goes back from ``kind`` to
        the owner's available."""
        if not held:
            return
        await self.ledger.post(
            refund_transaction(
                refund,
                "refund_release",
                wallet_move(refund, held, out_of=kind, into=AccountKind.available),
                step="release",
                description=f"Refund {public_id(self.public_prefix, refund.id)} did not happen",
            )
        )

    async def _post_reverted(
        self, refund: RowT, settled_keys: list[str], held: tuple[AccountKind, ...]
    ) -> None:
        """Undo what a refund Stripe reported succeeded booked (the transactions of
        ``settled_keys`` that exist, :func:`reversed_postings`), once per Stripe Refund."""
        postings: list[ledger_service.PostingSpec] = []
        for cause_key in settled_keys:
            settled = await self.ledger.repository.get_transaction(cause_key=cause_key)
            if settled is not None:
                postings.extend(reversed_postings(settled, held=held))
        stripe_id = refund.stripe_refund_id
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="refund_failed",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:refund_failed:{stripe_id}",
                description=f"Refund {public_id(self.public_prefix, refund.id)} failed "
                "after succeeding",
                metadata={self.metadata_key: refund.id, "refund": stripe_id},
                postings=postings,
            )
        )

    async def _count_succeeded(self, refund: RowT, parent: ParentT, now: datetime) -> None:
        """After the refund became succeeded, before its events."""
        return None

    async def reject_unsent(self, refund_id: int) -> RowT:
        """Stripe refused to create the refund: nothing was refunded, release the hold."""
        found = await self.row(refund_id)
        if found is None:  # pragma: no cover
            raise RefundNotFound()
        parent = await self.parent_of(found, for_update=True)
        refund = await self.row(refund_id, for_update=True)
        if refund is None or parent is None:  # pragma: no cover
            raise RefundNotFound()
        if refund.status == "pending" and refund.stripe_refund_id is None:
            await self.release_hold(refund)
            refund.status, refund.failure_reason = "failed", "provider_rejected"
            refund.updated_at = self.now()
            metrics.REFUNDS.labels(origin=refund.origin, outcome="rejected").inc()
            await self.emit_failed(refund, parent)
            await self.after_change(refund)
        return refund


@dataclass(frozen=True, slots=True)
class StripeRefundRequest:
    """One Stripe Refund to make for one of our refund rows."""

    payment_intent: str
    amount: int
    reason: str | None
    metadata: dict[str, str]
    key_scope: str
    """The idempotency key is ``<namespace>:{key_scope}:{key_id}``."""
    key_id: int
    match: tuple[str, str]
    """The metadata entry that names our row (recovery finds the refund by it)."""
    options: StripeRefundOptions = field(default_factory=StripeRefundOptions)


async def find_stripe_refund(
    stripe: StripeGateway, request: StripeRefundRequest
) -> StripeRefund | None:
    """The refund Stripe already made for this row, if any (Stripe forgets idempotency
    keys after a day)."""
    key, value = request.match
    for candidate in await stripe.list_refunds(payment_intent=request.payment_intent):
        if candidate.metadata.get(key) == value:
            return candidate
    return None


async def create_stripe_refund(
    stripe: StripeGateway, request: StripeRefundRequest, idempotency_key: str
) -> StripeRefund:
    return await stripe.create_refund(
        payment_intent=request.payment_intent,
        amount=request.amount,
        reason=request.reason,
        metadata=request.metadata,
        idempotency_key=idempotency_key,
        reverse_transfer=request.options.reverse_transfer,
        refund_application_fee=request.options.refund_application_fee,
    )


@dataclass(frozen=True, slots=True)
class RefundCall(Generic[RowT]):
    """What one attempt sends: the refund row as claimed and its Stripe Refund."""

    refund: RowT
    stripe: StripeRefundRequest


class _Rejected(Enum):
    REJECTED = "rejected"


REJECTED: Final = _Rejected.REJECTED
"""Stripe refused to make the refund (a definite answer: nothing was refunded)."""

RefundAnswer = StripeRefund | Literal[_Rejected.REJECTED]
"""Stripe's definite answer: its Refund object, or :data:`REJECTED`."""


class RefundSubmission(StripeOperation[RowT, RefundCall[RowT], RefundAnswer]):
    """Steps 2 to 4 of a variant's refunds on the Stripe operation skeleton; the variant
    (:class:`TwoPhaseRefunds`) says what to send and how to find rows left behind.

    ``look_up_first`` (the recovery's) first looks for a refund Stripe already made for
    the row, so one made more than a day ago, when Stripe has forgotten the key, is
    found rather than made again.
    """

    def __init__(self, refunds: TwoPhaseRefunds[RowT], *, look_up_first: bool) -> None:
        super().__init__(refunds.sessionmaker, now=refunds.now)
        self.refunds: TwoPhaseRefunds[RowT] = refunds
        self.look_up_first = look_up_first
        self.name = refunds.label
        self.sweep_limit = refunds.sweep_limit

    async def claim(
        self, session: AsyncSession, row_id: int
    ) -> tuple[RowT, Attempt[RefundCall[RowT]] | None]:
        refund = await self.refunds.settlement(session).row(row_id, for_update=True)
        if refund is None:
            raise RefundNotFound()
        if refund.status != "pending" or refund.stripe_refund_id is not None:
            return refund, None
        request = await self.refunds.stripe_request(session, refund)
        refund.stripe_attempts += 1
        refund.updated_at = self.now()
        return refund, Attempt(
            RefundCall(refund, request), request.key_scope, request.key_id, refund.stripe_attempts
        )

    async def call(self, request: RefundCall[RowT], idempotency_key: str) -> RefundAnswer | Unknown:
        await self.refunds.before_stripe(request.refund, request.stripe)
        stripe = self.refunds.stripe
        try:
            stripe_refund = None
            if self.look_up_first:
                stripe_refund = await find_stripe_refund(stripe, request.stripe)
            if stripe_refund is None:
                stripe_refund = await create_stripe_refund(stripe, request.stripe, idempotency_key)
        except PaymentProviderUnavailable:
            return UNKNOWN
        except PaymentProviderError:
            return REJECTED
        return stripe_refund

    async def settle(self, session: AsyncSession, row_id: int, answer: RefundAnswer) -> RowT:
        settlement = self.refunds.settlement(session)
        if answer is REJECTED:
            return await settlement.reject_unsent(row_id)
        applied = await settlement.apply(answer)
        if applied is None:  # pragma: no cover - metadata always names it
            raise RuntimeError(f"Stripe refund {answer.id} not applied")
        return applied

    async def unknown(
        self, session: AsyncSession, row_id: int, attempt: Attempt[RefundCall[RowT]]
    ) -> RowT:
        # The refund stays pending with its hold; a retry (the admin's, or the recovery
        # job's) uses the same key and cannot refund twice.
        log.warning("%s %s: Stripe unavailable, will retry", self.name, row_id)
        return attempt.request.refund

    async def due(self, session: AsyncSession, now: datetime, limit: int) -> list[int]:
        cutoff = now - timedelta(seconds=self.refunds.settings.refund_recovery_after_seconds)
        return await self.refunds.stuck(session, cutoff, limit)


class TwoPhaseRefunds(StripeFlow, ABC, Generic[RowT]):
    """A variant's admin refunds: what steps 2 to 4 (:class:`RefundSubmission`) send for
    its rows, and how its recovery finds them."""

    label = "refund"
    public_prefix = "rfd"
    sweep_limit = 50

    @abstractmethod
    def settlement(self, session: AsyncSession) -> RefundSettlementFlow[RowT, Any]: ...

    @abstractmethod
    async def stripe_request(self, session: AsyncSession, refund: RowT) -> StripeRefundRequest:
        """What to ask Stripe for a pending refund (its row locked)."""
        ...

    async def before_stripe(self, refund: RowT, request: StripeRefundRequest) -> None:
        """Reads made before Stripe is asked, outside any transaction."""
        return None

    @abstractmethod
    async def stuck(self, session: AsyncSession, cutoff: datetime, limit: int) -> list[int]:
        """Pending refunds asked for before ``cutoff`` and never answered."""
        ...

    async def submit_reserved(self, refund: RowT) -> RowT:
        """Steps 2 and 3 for a refund just reserved (a replayed request finds it as it
        is); ``RefundRejected`` when Stripe refused it (recorded failed, hold released)."""
        if refund.status == "pending" and refund.stripe_refund_id is None:
            refund = await self.submit(refund.id)
        if refund.failure_reason == "provider_rejected":
            raise RefundRejected(
                "The payment provider refused the refund; nothing was refunded.",
                refund_id=public_id(self.public_prefix, refund.id),
            )
        return refund

    async def submit(self, refund_id: int) -> RowT:
        """Steps 2 and 3: ask Stripe (same key on every retry) and apply its answer."""
        return await RefundSubmission(self, look_up_first=False).run(refund_id)

    async def recover(self, *, limit: int | None = None) -> int:
        """Finish refunds we asked for stuck before Stripe's answer (timeouts, crashes)."""
        return await RefundSubmission(self, look_up_first=True).recover(limit=limit)
