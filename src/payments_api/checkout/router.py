from __future__ import annotations

from fastapi import APIRouter

from payments_api import routes
from payments_api.escrow import errors as escrow_errors
from payments_api.kit.idempotency import IdempotencyKeyDep
from payments_api.orders import errors as orders_errors
from payments_api.orders.deps import PayInServiceDep
from payments_api.orders.schemas import CheckoutSessionCreate, CheckoutSessionRead
from payments_api.problems import problem_responses
from payments_api.projects import errors as projects_errors

router = APIRouter(tags=["checkout"])


@router.post(
    "/api/v1/checkout/sessions",
    summary="Start a Stripe Checkout payment",
    description="Creates a pending order and a Stripe Checkout Session. The wallet is "
    "credited only when Stripe confirms the payment by webhook, never by the success URL.",
    status_code=201,
    responses=problem_responses(
        400,
        401,
        403,
        escrow_errors.EscrowAmountTooSmall,
        *routes.AMOUNT_PROBLEMS,
        orders_errors.CheckoutWindowPassed,
        orders_errors.DiscountCodeInvalid,
        escrow_errors.EscrowCheckoutIncomplete,
        orders_errors.PriceNotFound,
        orders_errors.RedirectUrlNotAllowed,
        *projects_errors.DIRECT_PAYMENT_PROBLEMS,
        *routes.PROVIDER_PROBLEMS,
    ),
)
async def create_checkout_session(
    body: CheckoutSessionCreate, service: PayInServiceDep, idempotency_key: IdempotencyKeyDep
) -> CheckoutSessionRead:
    return await service.create_checkout(body, idempotency_key)
