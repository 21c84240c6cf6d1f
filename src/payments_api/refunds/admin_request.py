"""An admin's request for a refund, as every refund variant takes and records it.

Refunds of orders (by card or to the wallet), of subscription invoices and of jobs paid
from the wallet all keep the same facts of the request on their row (reason, note, the
admin, the idempotency key and the request's fingerprint), replay a request by its key
and write the same ``refund.create`` audit entry: one :class:`AdminRefundRequest` says
them once for every variant. :class:`AdminRefunds` is the admin's ``create`` of the
two-phase variants (orders, invoices): reserve, ask Stripe (the Stripe Refund each
variant's payment gets, :meth:`AdminRefunds.stripe_request`), apply its answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.repository import AuditLogRepository
from payments_api.auth import Principal
from payments_api.kit.idempotency import Fingerprinted, add_once, fingerprint, same_request
from payments_api.orders.purposes import StripeRefundOptions
from payments_api.refunds.schemas import RefundCreate, RefundRead
from payments_api.refunds.two_phase import RowT as TwoPhaseRowT
from payments_api.refunds.two_phase import StripeRefundRequest, TwoPhaseRefunds, answer_known
from payments_api.users.repository import UserRepository

RowT = TypeVar("RowT", bound=Fingerprinted)
RowT_co = TypeVar("RowT_co", bound=Fingerprinted, covariant=True)

KEY_USED_FOR_ANOTHER = "This Idempotency-Key was used for another refund."


class RefundsByKey(Protocol[RowT_co]):
    async def by_idempotency_key(self, actor_id: str, key: str) -> RowT_co | None: ...


@dataclass(frozen=True, slots=True)
class RefundAsk:
    """A refund request as the API received it (its admin not yet known as a user)."""

    principal: Principal
    body: RefundCreate
    idempotency_key: str
    request_id: str | None


@dataclass(frozen=True, slots=True)
class AdminRefundRequest:
    """Who asked for a refund, why, and under which idempotency key."""

    actor_id: str
    idempotency_key: str
    request_fingerprint: str
    request_id: str | None
    reason: str
    note: str | None

    @classmethod
    async def of(cls, session: AsyncSession, ask: RefundAsk) -> AdminRefundRequest:
        """The request ``ask`` (its admin recorded as a user)."""
        actor = await UserRepository(session).upsert_from_principal(ask.principal)
        body = ask.body
        return cls(
            actor_id=actor.id,
            idempotency_key=ask.idempotency_key,
            request_fingerprint=fingerprint(body.model_dump(mode="json")),
            request_id=ask.request_id,
            reason=body.reason,
            note=body.note,
        )

    async def replayed(self, refunds: RefundsByKey[RowT], detail: str | None = None) -> RowT | None:
        """The refund an earlier request with this key wrote, when this request is that
        one again; ``IdempotencyKeyReused`` (``detail``) when the key was used for another."""
        existing = await refunds.by_idempotency_key(self.actor_id, self.idempotency_key)
        return same_request(existing, self.request_fingerprint, detail)

    def row_fields(self) -> dict[str, Any]:
        """The request's columns of a refund row (every variant's table has them)."""
        return {
            "reason": self.reason,
            "note": self.note,
            "requested_by": self.actor_id,
            "idempotency_key": self.idempotency_key,
            "request_fingerprint": self.request_fingerprint,
        }

    async def add_once(self, session: AsyncSession, row: RowT, refunds: RefundsByKey[RowT]) -> RowT:
        """Write the new refund ``row``, or the row a concurrent twin of this request
        wrote first (``kit.idempotency.add_once``)."""
        return await add_once(
            session, row, lambda: refunds.by_idempotency_key(self.actor_id, self.idempotency_key)
        )

    async def audit(
        self, session: AsyncSession, refund_id: str, *, before: Any, after: Any
    ) -> None:
        """The ``refund.create`` audit entry of the refund ``refund_id`` (public id)."""
        await AuditLogRepository(session).record(
            actor_id=self.actor_id,
            action="refund.create",
            target_type="refund",
            target_id=refund_id,
            before=before,
            after=after,
            reason=self.note or self.reason,
            request_id=self.request_id,
        )


@dataclass(frozen=True, slots=True)
class RefundedPayment:
    """The Stripe payment a refund goes back to, what the Stripe Refund's metadata says
    of it (besides our refund's id) and what Stripe is asked besides."""

    payment_intent: str
    metadata: dict[str, str]
    options: StripeRefundOptions = field(default_factory=StripeRefundOptions)


class AdminRefunds(TwoPhaseRefunds[TwoPhaseRowT], ABC):
    """A two-phase variant's admin refunds: step 1 is the variant's (:meth:`reserve`),
    then Stripe is asked and its answer applied (:meth:`TwoPhaseRefunds.submit_reserved`)."""

    table = "refund"
    """Our refunds' table: the Stripe Refund's key scope and metadata (``<table>_id``)."""

    async def create(
        self,
        principal: Principal,
        body: RefundCreate,
        idempotency_key: str,
        *,
        request_id: str | None,
    ) -> tuple[RefundRead, bool]:
        """Refund what ``body`` names; returns the refund and whether Stripe's answer is
        known.

        Raises the refund problems (nothing written), or ``RefundRejected`` when Stripe
        refused it (the refund is recorded failed and the hold released).
        """
        ask = RefundAsk(principal, body, idempotency_key, request_id)
        done = await self.refunded_at_once(ask)
        if done is not None:
            return done, True
        refund = await self.submit_reserved(await self.reserve(ask))
        return await self.read(refund), answer_known(refund)

    async def refunded_at_once(self, ask: RefundAsk) -> RefundRead | None:
        """A refund this variant makes without Stripe, in one transaction (None: the
        two phases)."""
        return None

    @abstractmethod
    async def reserve(self, ask: RefundAsk) -> TwoPhaseRowT:
        """Step 1: check, write the pending refund and its hold, audit; one transaction."""
        ...

    @abstractmethod
    async def read(self, refund: TwoPhaseRowT) -> RefundRead: ...

    @abstractmethod
    async def refunded_payment(
        self, session: AsyncSession, refund: TwoPhaseRowT
    ) -> RefundedPayment: ...

    async def stripe_request(
        self, session: AsyncSession, refund: TwoPhaseRowT
    ) -> StripeRefundRequest:
        """The Stripe Refund of ``refund``'s payment: its metadata names our row
        (``<table>_id``, how recovery finds it), its key is ``<table>:<id>``."""
        paid = await self.refunded_payment(session, refund)
        key, ours = f"{self.table}_id", str(refund.id)
        return StripeRefundRequest(
            payment_intent=paid.payment_intent,
            amount=refund.amount,
            reason=refund.reason,
            metadata={key: ours, **paid.metadata},
            key_scope=self.table,
            key_id=refund.id,
            match=(key, ours),
            options=paid.options,
        )
