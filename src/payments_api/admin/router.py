from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from payments_api import routes
from payments_api.admin.schemas import (
    AdjustmentCreate,
    FreezeRequest,
    LedgerTransactionRead,
    UnfreezeRequest,
    WalletStatusRead,
)
from payments_api.admin.service import AdminService
from payments_api.deps import AdminUser, SessionDep
from payments_api.kit.idempotency import IdempotencyKeyDep, one_transaction
from payments_api.ledger import errors as ledger_errors
from payments_api.problems import problem_responses
from payments_api.users import errors as users_errors

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


async def get_admin_service(
    request_id: routes.RequestIdDep, session: SessionDep, admin: AdminUser
) -> AdminService:
    return AdminService(session, actor=admin, request_id=request_id)


AdminServiceDep = Annotated[AdminService, Depends(get_admin_service)]
UserIdPath = Annotated[str, Path(max_length=255, description="The user's id (JWT `sub`).")]


@router.post(
    "/adjustments",
    summary="Post a manual balanced adjustment",
    status_code=201,
    responses=problem_responses(
        400,
        401,
        403,
        users_errors.UserNotFound,
        ledger_errors.InsufficientFunds,
        ledger_errors.InvalidPosting,
        ledger_errors.UnbalancedTransaction,
    ),
)
@one_transaction
async def create_adjustment(
    body: AdjustmentCreate,
    service: AdminServiceDep,
    idempotency_key: IdempotencyKeyDep,
    response: Response,
) -> LedgerTransactionRead:
    transaction, replayed = await service.adjust(body, idempotency_key)
    routes.mark_replayed(response, replayed)
    return transaction


@router.post(
    "/wallets/{user_id}/freeze",
    summary="Freeze a wallet (blocks withdrawals)",
    responses=problem_responses(401, 403, 422, users_errors.UserNotFound),
)
@one_transaction
async def freeze_wallet(
    user_id: UserIdPath, body: FreezeRequest, service: AdminServiceDep
) -> WalletStatusRead:
    return await service.set_frozen(user_id, frozen=True, reason=body.reason)


@router.post(
    "/wallets/{user_id}/unfreeze",
    summary="Unfreeze a wallet",
    responses=problem_responses(401, 403, 422, users_errors.UserNotFound),
)
@one_transaction
async def unfreeze_wallet(
    user_id: UserIdPath, service: AdminServiceDep, body: UnfreezeRequest | None = None
) -> WalletStatusRead:
    return await service.set_frozen(user_id, frozen=False, reason=body.reason if body else None)
