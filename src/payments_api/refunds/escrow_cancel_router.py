"""``POST /api/v1/escrows/{escrow_id}/cancel``: the one escrow route that may refund.

With ``refund_to: card`` the cancel refunds the card payment (``RefundService.
cancel_escrow_to_card``), so the route sits here, above escrow, rather than in
``escrow/router.py``: refunds import escrow, and an escrow router importing refunds made
the two packages one import loop. It keeps the escrow tag and URL.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request

from payments_api import routes
from payments_api.deps import CurrentUser
from payments_api.escrow import errors as escrow_errors
from payments_api.escrow.models import EscrowStatus
from payments_api.escrow.router import (
    TRANSITION_PROBLEMS,
    EscrowCapturesDep,
    EscrowIdPath,
    EscrowServiceDep,
    ask_stripe_after_commit,
)
from payments_api.escrow.schemas import EscrowCancel, EscrowCancelRead, EscrowCardRefund
from payments_api.escrow.views import escrow_read, parse_escrow_id
from payments_api.kit.idempotency import IdempotencyKeyDep
from payments_api.kit.pagination import public_id
from payments_api.orders import refund_errors as refunds_errors
from payments_api.problems import problem_responses
from payments_api.refunds.deps import RefundServiceDep

router = APIRouter(tags=["escrow"])


@router.post(
    "/api/v1/escrows/{escrow_id}/cancel",
    summary="Cancel the job and return the money to the customer",
    description=(
        "Before acceptance: the customer, an admin, or the payee (declining); everything "
        "held returns to the customer. After acceptance: the customer (when "
        "PAYMENTS_ESCROW_CUSTOMER_MAY_CANCEL_AFTER_ACCEPT) or an admin; the price returns "
        "and the platform fee is kept or refunded per the escrow's captured policy. Send "
        "`expected_status` to refuse the cancel if the status changed meanwhile. "
        "`refund_to: card` refunds the card payment of an escrow paid by card and "
        "cancelled before acceptance (`refund` in the answer). An escrow paid by "
        "authorization (`authorized`) is cancelled at once and its authorization released "
        "at the card (`capture_status` `release_requested`, then `released` with "
        "`escrow.authorization_released`); nothing was captured, so nothing is refunded."
    ),
    responses=problem_responses(
        *TRANSITION_PROBLEMS,
        escrow_errors.CaptureUnavailable,
        refunds_errors.RefundToCardUnavailable,
        refunds_errors.RefundRejected,
        *routes.PROVIDER_PROBLEMS,
    ),
)
# Not @one_transaction: with `refund_to: card` the cancel calls Stripe, and no
# transaction (the key's included) may be held across a Stripe call.
async def cancel_escrow(
    escrow_id: EscrowIdPath,
    request: Request,
    user: CurrentUser,
    service: EscrowServiceDep,
    refunds: RefundServiceDep,
    captures: EscrowCapturesDep,
    background: BackgroundTasks,
    idempotency_key: IdempotencyKeyDep,
    request_id: routes.RequestIdDep,
    body: EscrowCancel | None = None,
) -> EscrowCancelRead:
    expected = EscrowStatus(body.expected_status) if body and body.expected_status else None
    reason = body.reason if body else None
    if body is not None and body.refund_to == "card":
        escrow, refund = await refunds.cancel_escrow_to_card(
            parse_escrow_id(escrow_id),
            user,
            reason=reason,
            expected_status=expected,
            request_id=request_id,
        )
        ask_stripe_after_commit(escrow, captures, request, background)
        return EscrowCancelRead(
            **escrow_read(escrow, user).model_dump(),
            refund=None
            if refund is None
            else EscrowCardRefund(
                id=public_id("rfd", refund.id),
                amount=refund.amount,
                currency=refund.currency,
                status=refund.status,
            ),
        )
    result = await service.cancel(
        parse_escrow_id(escrow_id), user, reason=reason, expected_status=expected
    )
    ask_stripe_after_commit(result.escrow, captures, request, background)
    return EscrowCancelRead(**escrow_read(result.escrow, user).model_dump())
