from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from payments_api.balance.schemas import BalanceRead, LedgerEntryList
from payments_api.balance.service import BalanceReader, BalanceService
from payments_api.deps import BEARER_SECURITY, CurrentUser, SessionDep, principal_of, state_of
from payments_api.kit import pagination
from payments_api.kit.pagination import Limit
from payments_api.money import Currency
from payments_api.problems import problem_responses

router = APIRouter(prefix="/api/v1/me", tags=["balance"])


@router.get(
    "/balance",
    summary="The caller's balances per currency",
    response_model=BalanceRead,
    responses=problem_responses(401),
    openapi_extra=BEARER_SECURITY,
)
async def get_balance(request: Request) -> Response:
    # No dependency at all: the caller is authenticated here (principal_of, as
    # PrincipalDep would) and the sessionmaker read off the request. Solving
    # dependencies was a fifth of this read's CPU (bench/readpath.py).
    principal = principal_of(request)
    state = state_of(request)
    balance = await BalanceReader(state.sessionmaker).balance(principal)
    # Serialized here, as FastAPI would, without validating the model it just built again.
    return Response(balance.model_dump_json(), media_type="application/json")


@router.get(
    "/ledger",
    summary="The caller's ledger entries, newest first",
    responses=problem_responses(401, pagination.InvalidCursor),
)
async def list_ledger_entries(
    user: CurrentUser,
    session: SessionDep,
    limit: Limit = 20,
    starting_after: Annotated[
        str | None, Query(description="Entry id to continue after (exclusive).")
    ] = None,
    currency: Annotated[Currency | None, Query(description="Only this currency.")] = None,
    type: Annotated[
        str | None, Query(max_length=48, description="Only this transaction type.")
    ] = None,
) -> LedgerEntryList:
    return await BalanceService(session).entries(
        user,
        limit=limit,
        starting_after=starting_after,
        currency=currency,
        transaction_type=type,
    )
