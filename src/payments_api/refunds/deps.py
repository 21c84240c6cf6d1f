from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from payments_api.deps import StateDep
from payments_api.refunds.cashouts import CashoutService
from payments_api.refunds.invoices import InvoiceRefundService
from payments_api.refunds.service import RefundService


async def get_refund_service(state: StateDep) -> RefundService:
    return RefundService(state.sessionmaker, state.stripe, state.settings)


RefundServiceDep = Annotated[RefundService, Depends(get_refund_service)]


async def get_invoice_refund_service(state: StateDep) -> InvoiceRefundService:
    return InvoiceRefundService(state.sessionmaker, state.stripe, state.settings)


InvoiceRefundServiceDep = Annotated[InvoiceRefundService, Depends(get_invoice_refund_service)]


async def get_cashout_service(state: StateDep) -> CashoutService:
    # No request-wide transaction: the cash-out is committed before Stripe is called.
    return CashoutService(state.sessionmaker, state.stripe, state.settings)


CashoutServiceDep = Annotated[CashoutService, Depends(get_cashout_service)]
