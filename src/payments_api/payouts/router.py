from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from payments_api import routes
from payments_api.auth import Principal
from payments_api.deps import StateDep
from payments_api.kit.idempotency import IdempotencyKeyDep
from payments_api.kit.pagination import Limit
from payments_api.ledger import errors as ledger_errors
from payments_api.payouts import errors as payouts_errors
from payments_api.payouts.schemas import (
    PayoutList,
    WithdrawalCreate,
    WithdrawalCreated,
    WithdrawalList,
)
from payments_api.payouts.service import PayoutService
from payments_api.problems import problem_responses
from payments_api.stripe import errors as stripe_errors

router = APIRouter(tags=["payouts"])


# From the token alone: a withdrawal calls Stripe with no transaction held.
PayeeDep = Annotated[
    Principal, Depends(routes.principal_with_role("payee", "Payouts need the payee role."))
]
WithdrawalPage = Annotated[routes.Page, routes.cursor_page("Withdrawal id to continue after.")]


async def get_payout_service(state: StateDep) -> PayoutService:
    # No request-wide transaction: the withdrawal is committed before Stripe is called.
    return PayoutService(state.sessionmaker, state.stripe, state.settings)


PayoutServiceDep = Annotated[PayoutService, Depends(get_payout_service)]


@router.post(
    "/api/v1/me/payouts",
    summary="Withdraw available money to the payout account",
    description="Holds the amount (available -> withdrawing) and transfers it to the "
    "connected account. 201 when Stripe confirmed the transfer or refused it (money back); "
    "202 with status `pending` when Stripe's answer is not known yet: it is retried with "
    "the same idempotency key until known — never transferred twice. The answer carries "
    "`available_after` (the balance after the request) and `expected_arrival_date` (from "
    "the connected account's payout schedule).",
    status_code=201,
    responses=routes.pending_responses(
        WithdrawalCreated,
        "Accepted; transfer outcome pending",
        400,
        401,
        403,
        ledger_errors.InsufficientFunds,
        *routes.AMOUNT_PROBLEMS,
        payouts_errors.PayoutAccountNotReady,
        payouts_errors.WalletFrozen,
    ),
)
async def create_withdrawal(
    body: WithdrawalCreate,
    principal: PayeeDep,
    service: PayoutServiceDep,
    idempotency_key: IdempotencyKeyDep,
    response: Response,
) -> WithdrawalCreated:
    withdrawal = await service.withdraw(principal, body, idempotency_key)
    routes.accepted_unless_known(response, known=withdrawal.status != "pending")
    return withdrawal


@router.get(
    "/api/v1/me/payouts",
    summary="Payouts of the caller's connected account and their withdrawal requests",
    description="A page of the connected account's bank payouts as Stripe lists them, "
    "newest first; continue with `starting_after` set to the last payout id (`po_...`) "
    "while `has_more`.",
    responses=problem_responses(
        401, 403, 422, *routes.PROVIDER_PROBLEMS, stripe_errors.ProviderObjectMissing
    ),
)
async def list_payouts(
    principal: PayeeDep,
    service: PayoutServiceDep,
    limit: Limit = 20,
    status: Annotated[
        Literal["pending", "in_transit", "paid", "failed", "canceled"] | None,
        Query(description="Only payouts in this state."),
    ] = None,
    starting_after: Annotated[
        str | None,
        # Empty is the first page, as on every list; ASCII only (``\w`` would take any
        # Unicode letter or digit, which Stripe would refuse as an unknown id).
        Query(
            max_length=255,
            pattern=r"^(po_[A-Za-z0-9_]+)?$",
            description="Payout id to continue after; empty: the first page.",
        ),
    ] = None,
) -> PayoutList:
    return await service.list(
        principal, limit=limit, status=status, starting_after=starting_after or None
    )


@router.get(
    "/api/v1/me/withdrawals",
    summary="The caller's withdrawal requests, newest first",
    responses=problem_responses(401, 403, 422),
)
async def list_withdrawals(
    principal: PayeeDep, service: PayoutServiceDep, page: WithdrawalPage
) -> WithdrawalList:
    return await service.withdrawals(principal.sub, **page)
