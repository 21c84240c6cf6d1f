"""The ``refund.succeeded`` and ``refund.failed`` events, sent the same way for every
kind of refund (of an order, of a subscription invoice, of a job paid from the wallet):
the refund as the API shows it, to the customer it refunds, once per outcome of each
refund (``<table>:<id>:<outcome>``)."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.refunds.schemas import RefundRead

Outcome = Literal["succeeded", "failed"]

EVENT_OF: dict[Outcome, EventType] = {
    "succeeded": EventType.refund_succeeded,
    "failed": EventType.refund_failed,
}


async def emit_refund_outcome(
    session: AsyncSession, read: RefundRead, table: str, refund_id: int, outcome: Outcome
) -> None:
    """Send ``refund.<outcome>`` for the refund ``refund_id`` of ``table`` (``refund``,
    ``invoice_refund``, ``escrow_refund``), shown as ``read``."""
    change_key = f"{table}:{refund_id}:{outcome}"
    await emit(session, EVENT_OF[outcome], read, change_key=change_key, user_ids=[read.user_id])
