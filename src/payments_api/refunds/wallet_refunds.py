"""A wallet cash-out as the API shows it, and its status derived from its refunds.

Shared by the cash-out service (creation, reads) and :class:`RefundSettlement` (each
part's settlement refreshes its cash-out in the same transaction and sends its events).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.kit.pagination import public_id
from payments_api.orders.refund_models import Refund, WalletRefund
from payments_api.orders.refund_repository import IN_FLIGHT, WalletRefundRepository
from payments_api.refunds.schemas import WalletRefundPart, WalletRefundRead

WALLET_REFUND_PREFIX = "wrf"
FINAL_FAILED = ("failed", "canceled")


def wallet_refund_read(row: WalletRefund, parts: list[Refund]) -> WalletRefundRead:
    return WalletRefundRead(
        id=public_id(WALLET_REFUND_PREFIX, row.id),
        user_id=row.user_id,
        amount=row.amount,
        currency=row.currency,
        status=row.status,
        refunded_amount=row.refunded_amount,
        refunding_amount=row.amount - row.refunded_amount - row.failed_amount,
        failed_amount=row.failed_amount,
        refunds=[
            WalletRefundPart(
                refund_id=public_id("rfd", part.id),
                topup_id=public_id("ord", part.order_id),
                amount=part.amount,
                status=part.status,
                stripe_refund_id=part.stripe_refund_id,
                failure_reason=part.failure_reason,
            )
            # Allocation order: newest charge first (the parts were written in it).
            for part in parts
        ],
        created_at=row.created_at,
        completed_at=row.completed_at,
    )


async def refresh_wallet_refund(
    session: AsyncSession, wallet_refund_id: int, now: datetime
) -> None:
    """Recompute a cash-out from its refunds (after one of them moved) and send
    ``wallet_refund.succeeded`` / ``wallet_refund.failed`` when it becomes final.

    ``failed`` is sent for ``failed`` and ``partially_failed`` (the payload's status
    says which); a refund Stripe fails after it succeeded moves a final cash-out again
    and sends the event of its new status."""
    repository = WalletRefundRepository(session)
    row = await repository.get(wallet_refund_id, for_update=True)
    if row is None:  # pragma: no cover - the foreign key guarantees it
        raise RuntimeError(f"wallet refund {wallet_refund_id} is missing")
    parts = (await repository.parts([row.id]))[row.id]
    refunded = sum(p.amount for p in parts if p.status == "succeeded")
    failed = sum(p.amount for p in parts if p.status in FINAL_FAILED)
    if any(p.status in IN_FLIGHT for p in parts):
        status = "pending"
    elif failed == 0:
        status = "succeeded"
    elif refunded == 0:
        status = "failed"
    else:
        status = "partially_failed"
    changed = status != row.status
    row.refunded_amount, row.failed_amount = refunded, failed
    row.status, row.updated_at = status, now
    if status != "pending" and (changed or row.completed_at is None):
        row.completed_at = now
    if not changed or status == "pending":
        return
    event = (
        EventType.wallet_refund_succeeded
        if status == "succeeded"
        else EventType.wallet_refund_failed
    )
    await emit(
        session,
        event,
        wallet_refund_read(row, parts),
        change_key=f"wallet_refund:{row.id}:{status}:{refunded}",
        user_ids=[row.user_id],
    )
