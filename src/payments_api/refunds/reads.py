"""Reading refunds of orders: the API's view of a refund row and the admin listings."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.models import EscrowFunding
from payments_api.escrow.repository import EscrowRepository
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.orders.reads import ORDER_PREFIX
from payments_api.orders.refund_errors import RefundNotFound
from payments_api.orders.refund_models import Refund
from payments_api.orders.refund_repository import IN_FLIGHT, RefundRepository
from payments_api.orders.repository import OrderRepository
from payments_api.refunds.escrow_refunds import ESCROW_PREFIX, list_escrow_refunds
from payments_api.refunds.invoice_models import InvoiceRefund
from payments_api.refunds.schemas import RefundList, RefundRead
from payments_api.refunds.wallet_refunds import WALLET_REFUND_PREFIX

REFUND_PREFIX = "rfd"


def shared_fields(refund: Refund | InvoiceRefund) -> dict[str, Any]:
    """What a refund's read shows the same way whatever it refunds (an order, an
    invoice)."""
    return {
        "user_id": refund.user_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "status": refund.status,
        "origin": refund.origin,
        "reason": refund.reason,
        "note": refund.note,
        "requested_by": refund.requested_by,
        "stripe_refund_id": refund.stripe_refund_id,
        "failure_reason": refund.failure_reason,
        "created_at": refund.created_at,
        "succeeded_at": refund.succeeded_at,
    }


def refund_read(refund: Refund) -> RefundRead:
    return RefundRead(
        **shared_fields(refund),
        id=public_id(REFUND_PREFIX, refund.id),
        order_id=public_id(ORDER_PREFIX, refund.order_id),
        held_amount=refund.hold_amount if refund.status in IN_FLIGHT else 0,
        credit_taken_back=refund.credit_amount,
        forced=refund.forced,
        payee_share=refund.payee_share,
        wallet_refund_id=(
            public_id(WALLET_REFUND_PREFIX, refund.wallet_refund_id)
            if refund.wallet_refund_id is not None
            else None
        ),
    )


class RefundQueries:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = RefundRepository(session)

    async def list_for_escrow(
        self, *, escrow_id: str, limit: int, starting_after: str | None, status: str | None
    ) -> RefundList:
        """A job's refunds: a card-paid job's are its funding order's (``rfd_``), a
        wallet-paid job's its own (``rfe_``, always succeeded)."""
        number = parse_public_id(ESCROW_PREFIX, escrow_id)
        escrow = await EscrowRepository(self.session).get(number) if number else None
        if escrow is None:
            return RefundList(data=[], has_more=False)
        if escrow.funding == EscrowFunding.card.value:
            order = await OrderRepository(self.session).escrow_funding(escrow.id)
            if order is None:
                return RefundList(data=[], has_more=False)
            return await self.list(
                limit=limit,
                starting_after=starting_after,
                order_id=public_id(ORDER_PREFIX, order.id),
                status=status,
            )
        if status not in (None, "succeeded"):
            return RefundList(data=[], has_more=False)
        return await list_escrow_refunds(
            self.session, escrow_number=escrow.id, limit=limit, starting_after=starting_after
        )

    async def get(self, refund_id: str) -> RefundRead:
        number = parse_public_id(REFUND_PREFIX, refund_id)
        refund = await self.repository.get(number) if number is not None else None
        if refund is None:
            raise RefundNotFound()
        return refund_read(refund)

    async def list(
        self,
        *,
        limit: int,
        starting_after: str | None,
        order_id: str | None,
        status: str | None,
    ) -> RefundList:
        order_number = None
        if order_id is not None:
            order_number = parse_public_id(ORDER_PREFIX, order_id)
            if order_number is None:
                return RefundList(data=[], has_more=False)
        rows = await self.repository.page(
            limit=limit + 1,
            before_id=parse_cursor(REFUND_PREFIX, starting_after),
            order_id=order_number,
            status=status,
        )
        return RefundList(data=[refund_read(r) for r in rows[:limit]], has_more=len(rows) > limit)
