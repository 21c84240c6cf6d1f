from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from payments_api.deps import AdminUser, SessionDep
from payments_api.kit import amounts
from payments_api.kit.idempotency import IdempotencyKeyDep
from payments_api.kit.pagination import Limit
from payments_api.orders import errors as orders_errors
from payments_api.problems import problem_responses
from payments_api.refunds import errors as refunds_errors
from payments_api.refunds import invoices
from payments_api.refunds.deps import (
    AdminPrincipalDep,
    InvoiceRefundServiceDep,
    RefundServiceDep,
)
from payments_api.refunds.schemas import RefundCreate, RefundList, RefundRead
from payments_api.refunds.service import RefundQueries
from payments_api.stripe import errors as stripe_errors

router = APIRouter(tags=["admin"])


@router.post(
    "/api/v1/admin/refunds",
    summary="Refund all or part of a pay-in",
    description="Refuses more than what is still refundable on the order "
    "(`refund_exceeds_refundable`) and, for top-ups, more than the customer still holds "
    "available (`refund_exceeds_available`); a refused request writes nothing. The amount "
    "is held from the customer's available balance, then the Stripe Refund is created "
    "with an idempotency key derived from the refund's id. 201 when Stripe answered (the "
    "ledger settles when Stripe reports `succeeded`, by this response or its webhook, "
    "whichever comes first); 202 when Stripe's answer is not known yet (it is retried "
    "with the same key, never refunded twice). A direct payment (destination charge) is "
    "refunded with `reverse_transfer` and `refund_application_fee`: the payee's share and "
    "the platform's fee come back in the payment's proportions (largest remainder); what "
    "the payee's connected account cannot cover is borne by the platform. An order paid "
    "from the wallet (`source: wallet`) is refunded to the wallet at once, no Stripe call "
    "(201 `succeeded`); a direct one gives back the payee's share from the payee's "
    "available balance (the platform covers what they withdrew). An order whose price "
    "granted wallet credit takes the credit back in proportion (largest remainder), "
    "refused with 409 `credit_already_spent` when the buyer's available balance no longer "
    "covers it, unless `force: true`, which may take the wallet negative and then freezes "
    "it. A completed job paid by card (purpose `escrow`) reverses its settlement in "
    "proportion (payee's take and the platform's fees; the platform covers what the payee "
    "withdrew) before the card is refunded; an escrow not completed answers "
    "`refund_not_supported` (cancel it instead).\n\n"
    "With `invoice_id` instead of `order_id`, a paid subscription invoice is refunded "
    "(its PaymentIntent, key derived from the refund's id, `rfi_…` ids): the revenue "
    "comes back out of sales and the plan credit the invoice granted is taken back in "
    "proportion (held from the wallet meanwhile). When the subscriber has spent it the "
    "request is refused (`refund_credit_spent`) unless `force` is true, in which case the "
    "platform bears the spent part. Stripe keeps its fee.",
    operation_id="createRefund",
    status_code=201,
    responses={
        202: {"model": RefundRead, "description": "Accepted; Stripe's answer pending"},
        **problem_responses(
            400,
            401,
            403,
            422,
            orders_errors.OrderNotFound,
            refunds_errors.RefundExceedsAvailable,
            refunds_errors.RefundExceedsRefundable,
            amounts.AmountNotInSteps,
            refunds_errors.RefundRejected,
            refunds_errors.OrderNotRefundable,
            refunds_errors.RefundNotSupported,
            refunds_errors.RefundCurrencyMismatch,
            invoices.InvoiceNotFound,
            invoices.InvoiceNotRefundable,
            invoices.RefundCreditSpent,
            refunds_errors.CreditAlreadySpent,
            stripe_errors.PaymentProviderError,
            stripe_errors.PaymentProviderUnavailable,
        ),
    },
)
async def create_refund(
    body: RefundCreate,
    request: Request,
    principal: AdminPrincipalDep,
    service: RefundServiceDep,
    invoice_service: InvoiceRefundServiceDep,
    idempotency_key: IdempotencyKeyDep,
    response: Response,
) -> RefundRead:
    if body.invoice_id is not None:
        refund, known = await invoice_service.create(
            principal,
            body,
            idempotency_key,
            request_id=getattr(request.state, "request_id", None),
        )
        if not known:
            response.status_code = 202
        return refund
    refund, known = await service.create(
        principal,
        body,
        idempotency_key,
        request_id=getattr(request.state, "request_id", None),
    )
    if not known:
        response.status_code = 202
    return refund


@router.get(
    "/api/v1/admin/refunds",
    summary="Refunds, newest first",
    operation_id="listRefunds",
    responses=problem_responses(401, 403, 422),
)
async def list_refunds(
    _admin: AdminUser,
    session: SessionDep,
    limit: Limit = 20,
    starting_after: Annotated[str | None, Query(description="Refund id to continue after.")] = None,
    order_id: Annotated[
        str | None, Query(max_length=32, description="Only this order's refunds.")
    ] = None,
    status: Annotated[
        Literal["pending", "requires_action", "succeeded", "failed", "canceled"] | None,
        Query(description="Only refunds in this state."),
    ] = None,
    invoice_id: Annotated[
        str | None,
        Query(max_length=255, description="Only this subscription invoice's refunds."),
    ] = None,
) -> RefundList:
    if invoice_id is not None:
        return await invoices.InvoiceRefundQueries(session).list(
            limit=limit, starting_after=starting_after, invoice_id=invoice_id
        )
    return await RefundQueries(session).list(
        limit=limit, starting_after=starting_after, order_id=order_id, status=status
    )


@router.get(
    "/api/v1/admin/refunds/{refund_id}",
    summary="One refund",
    operation_id="getRefund",
    responses=problem_responses(401, 403, refunds_errors.RefundNotFound),
)
async def get_refund(
    refund_id: Annotated[str, Path(max_length=32, examples=["rfd_3"])],
    _admin: AdminUser,
    session: SessionDep,
) -> RefundRead:
    if refund_id.startswith(f"{invoices.INVOICE_REFUND_PREFIX}_"):
        return await invoices.InvoiceRefundQueries(session).get(refund_id)
    return await RefundQueries(session).get(refund_id)
