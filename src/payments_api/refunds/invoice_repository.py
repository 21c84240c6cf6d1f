"""SQL of invoice refunds: their rows, and the subscription invoices they refund."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from payments_api.kit.row_repository import RowRepository
from payments_api.orders.refund_repository import IN_FLIGHT
from payments_api.refunds.invoice_models import InvoiceRefund
from payments_api.subscriptions.models import SubscriptionInvoice
from payments_api.subscriptions.repository import InvoiceRepository


class InvoiceRefundRepository(RowRepository[InvoiceRefund]):
    model = InvoiceRefund

    async def by_stripe_id(self, stripe_refund_id: str) -> InvoiceRefund | None:
        return await self.one(
            select(InvoiceRefund).where(InvoiceRefund.stripe_refund_id == stripe_refund_id),
            fresh=False,
        )

    async def by_idempotency_key(self, actor_id: str, key: str) -> InvoiceRefund | None:
        return await self.one(
            select(InvoiceRefund).where(
                InvoiceRefund.requested_by == actor_id, InvoiceRefund.idempotency_key == key
            ),
            fresh=False,
        )

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


class InvoiceLookup(InvoiceRepository, RowRepository[SubscriptionInvoice]):
    """The subscription invoices refunds read: the subscriptions' queries (by Stripe id,
    by payment) and one by row id (``RowRepository.get``)."""

    model = SubscriptionInvoice
