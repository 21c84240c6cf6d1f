"""Refunds of completed jobs (escrows) paid from the wallet.

A card-paid job is refunded through the order that paid it (the settlement is reversed
into the refund's hold, then the card is refunded; see ``service``). A job paid from the
wallet has no order and no charge: its refund reverses the settlement in proportion —
the payee's take (cumulative largest remainder of ``payee_amount`` over the escrow's
refunds, like a card-paid job) and the rest from the platform's fees — straight back to
the customer's available balance, in one transaction, with no Stripe call. What the
payee no longer holds (withdrawn since) is covered by the platform, booked to
``adjustments``. Refundable: the hold (price plus platform fee) less what was refunded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.models import Escrow, EscrowStatus
from payments_api.escrow.settlement_reversal import reverse_escrow_settlement
from payments_api.kit.idempotency import IdempotencyKeyReused
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind
from payments_api.money import proportional_part
from payments_api.orders.refund_errors import (
    RefundCurrencyMismatch,
    RefundExceedsRefundable,
    RefundNotFound,
    RefundNotSupported,
)
from payments_api.refunds import metrics
from payments_api.refunds.admin_request import AdminRefundRequest
from payments_api.refunds.escrow_refund_models import EscrowRefund
from payments_api.refunds.refund_events import emit_refund_outcome
from payments_api.refunds.schemas import RefundCreate, RefundList, RefundRead

ESCROW_REFUND_PREFIX = "rfe"
ESCROW_PREFIX = "esc"


def escrow_refund_read(refund: EscrowRefund) -> RefundRead:
    return RefundRead(
        id=public_id(ESCROW_REFUND_PREFIX, refund.id),
        order_id=None,
        escrow_id=public_id(ESCROW_PREFIX, refund.escrow_id),
        user_id=refund.user_id,
        amount=refund.amount,
        currency=refund.currency,
        status="succeeded",
        origin="admin",
        reason=refund.reason,
        note=refund.note,
        requested_by=refund.requested_by,
        held_amount=0,
        payee_share=refund.payee_share,
        created_at=refund.created_at,
        succeeded_at=refund.created_at,
    )


def _user(user_id: str, kind: AccountKind, currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.user(user_id, kind, currency)


async def refunded_amount(session: AsyncSession, escrow_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(EscrowRefund.amount), 0)).where(
            EscrowRefund.escrow_id == escrow_id
        )
    )
    return int(total or 0)


async def refund_wallet_escrow(
    session: AsyncSession,
    escrow: Escrow,
    request: AdminRefundRequest,
    body: RefundCreate,
    *,
    now: datetime,
) -> EscrowRefund:
    """Refund a completed wallet-funded ``escrow`` (locked by the caller) to the wallet,
    in the caller's transaction; a replayed key returns the first refund."""
    existing = await session.scalar(
        select(EscrowRefund).where(
            EscrowRefund.requested_by == request.actor_id,
            EscrowRefund.idempotency_key == request.idempotency_key,
        )
    )
    if existing is not None:
        if existing.request_fingerprint != request.request_fingerprint:
            raise IdempotencyKeyReused("This Idempotency-Key was used for another refund.")
        return existing
    escrow_public = public_id(ESCROW_PREFIX, escrow.id)
    if escrow.status != EscrowStatus.completed.value:
        raise RefundNotSupported(
            "A job is refunded here once it is completed; before that, cancel the escrow "
            "(its money goes back to the wallet).",
            purpose="escrow",
            escrow_status=escrow.status,
        )
    currency = escrow.currency
    if body.currency is not None and body.currency != currency:
        raise RefundCurrencyMismatch(f"Escrow {escrow_public} is in {currency}.", currency=currency)
    before = await refunded_amount(session, escrow.id)
    refundable = escrow.hold_amount - before
    amount = body.amount if body.amount is not None else refundable
    if refundable <= 0 or amount > refundable:
        raise RefundExceedsRefundable(
            f"At most {max(refundable, 0)} {currency} minor units can still be refunded on "
            f"{escrow_public}.",
            refundable=max(refundable, 0),
            requested=amount,
            currency=currency,
        )
    payee_share = proportional_part(amount, escrow.hold_amount, escrow.payee_amount, before)
    fee_share = amount - payee_share
    refund = EscrowRefund(
        escrow_id=escrow.id,
        user_id=escrow.customer_id,
        amount=amount,
        currency=currency,
        payee_share=payee_share,
        fee_share=fee_share,
        platform_covered=0,
        created_at=now,
        **request.row_fields(),
    )
    try:
        async with session.begin_nested():
            session.add(refund)
            await session.flush()
    except IntegrityError:
        raise IdempotencyKeyReused(
            "This Idempotency-Key is being used by a concurrent refund; retry."
        ) from None
    covered, payee_available = await reverse_escrow_settlement(
        session,
        escrow,
        to=_user(escrow.customer_id, AccountKind.available, currency),
        amount=amount,
        payee_share=payee_share,
        fee_share=fee_share,
        cause_key=f"escrow_refund:{refund.id}:reversal",
        description=f"Refund {public_id(ESCROW_REFUND_PREFIX, refund.id)} reverses the "
        f"settlement of escrow {escrow_public} into the customer's wallet",
        metadata={"escrow_refund_id": refund.id},
    )
    refund.platform_covered = covered
    read = escrow_refund_read(refund)
    snapshot: dict[str, Any] = {"escrow": escrow_public, "refunded": before}
    await request.audit(
        session,
        read.id,
        before=snapshot,
        after={
            **snapshot,
            "refunded": before + amount,
            "refund": {
                "id": read.id,
                "amount": amount,
                "currency": currency,
                "status": "succeeded",
                "to": "wallet",
                "payee_share": payee_share,
                "fee_share": fee_share,
                "platform_covered": covered,
                "payee_available": payee_available,
            },
        },
    )
    await emit_refund_outcome(session, read, "escrow_refund", refund.id, "succeeded")
    metrics.REFUNDS.labels(origin="admin", outcome="succeeded").inc()
    return refund


async def get_escrow_refund(session: AsyncSession, refund_id: str) -> RefundRead:
    number = parse_public_id(ESCROW_REFUND_PREFIX, refund_id)
    refund = await session.get(EscrowRefund, number) if number is not None else None
    if refund is None:
        raise RefundNotFound()
    return escrow_refund_read(refund)


async def list_escrow_refunds(
    session: AsyncSession, *, escrow_number: int, limit: int, starting_after: str | None
) -> RefundList:
    """A wallet-paid job's refunds, newest first (``rfe_`` cursor)."""
    query = (
        select(EscrowRefund)
        .where(EscrowRefund.escrow_id == escrow_number)
        .order_by(EscrowRefund.id.desc())
        .limit(limit + 1)
    )
    before = parse_cursor(ESCROW_REFUND_PREFIX, starting_after)
    if before is not None:
        query = query.where(EscrowRefund.id < before)
    rows = list((await session.scalars(query)).all())
    return RefundList(
        data=[escrow_refund_read(r) for r in rows[:limit]], has_more=len(rows) > limit
    )
