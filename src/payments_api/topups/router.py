from __future__ import annotations

from fastapi import APIRouter

from payments_api import routes
from payments_api.kit.idempotency import IdempotencyKeyDep
from payments_api.orders.deps import PayInServiceDep
from payments_api.orders.schemas import TopupCreate, TopupRead
from payments_api.payment_methods import errors as payment_methods_errors
from payments_api.problems import problem_responses
from payments_api.stripe import errors as stripe_errors
from payments_api.users import errors as users_errors

router = APIRouter(tags=["topups"])


@router.post(
    "/api/v1/topups",
    summary="Top up the wallet with a PaymentIntent (mobile)",
    description="Returns the PaymentIntent's client secret for Stripe's SDK to confirm, or "
    "confirms it with a saved card (`payment_method`), on- or off-session "
    "(`off_session: true`, the default card unless `payment_method` names another). A "
    "bank that wants the customer answers `requires_action` with `next_action`; a refused "
    "card answers 402 `card_declined` with a stable `decline_code` (`insufficient_funds`, "
    "`expired_card`, `authentication_failed`, ...). The `service` role may top up a user "
    "off-session (`user_id`). "
    "The wallet is credited when Stripe sends payment_intent.succeeded.",
    status_code=201,
    responses=problem_responses(
        400,
        401,
        403,
        409,
        422,
        users_errors.UserNotFound,
        payment_methods_errors.PaymentMethodNotFound,
        payment_methods_errors.NoDefaultPaymentMethod,
        *routes.AMOUNT_PROBLEMS,
        stripe_errors.CardDeclined,
        *routes.PROVIDER_PROBLEMS,
    ),
)
async def create_topup(
    body: TopupCreate, service: PayInServiceDep, idempotency_key: IdempotencyKeyDep
) -> TopupRead:
    return await service.create_topup(body, idempotency_key)
