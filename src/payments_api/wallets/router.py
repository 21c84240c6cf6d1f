"""``POST /api/v1/wallets/{user_id}/debits``: the platform's backend charges usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from payments_api.deps import SessionDep, SettingsDep, require_role
from payments_api.kit import amounts
from payments_api.kit.idempotency import IdempotencyKeyDep, one_transaction
from payments_api.ledger import errors as ledger_errors
from payments_api.problems import problem_responses
from payments_api.users import errors as users_errors
from payments_api.users.models import User
from payments_api.wallets.schemas import WalletDebitCreate, WalletDebitRead
from payments_api.wallets.service import WalletService

router = APIRouter(tags=["wallets"])

ServiceCaller = Annotated[User, Depends(require_role("service"))]


@router.post(
    "/api/v1/wallets/{user_id}/debits",
    summary="Debit a user's wallet for usage (role service)",
    description="Moves `amount` from the user's available balance to the platform, once "
    "per Idempotency-Key; 402 `insufficient_funds` with nothing taken when available is "
    "short (never below zero; the API's one status for that code); 409 `wallet_frozen` "
    "while the wallet is frozen. Sends "
    "`wallet.debited`.",
    status_code=201,
    responses=problem_responses(
        400,
        401,
        403,
        422,
        users_errors.UserNotFound,
        ledger_errors.InsufficientFunds,
        ledger_errors.WalletFrozen,
        amounts.AmountOutOfRange,
        amounts.CurrencyNotSupported,
    ),
)
@one_transaction
async def debit_wallet(
    user_id: Annotated[str, Path(max_length=255, description="The user's id (JWT `sub`).")],
    body: WalletDebitCreate,
    caller: ServiceCaller,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
) -> WalletDebitRead:
    return await WalletService(session, settings).debit(
        user_id, body, actor_id=caller.id, idempotency_key=idempotency_key
    )
