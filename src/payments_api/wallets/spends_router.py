"""``POST /api/v1/orders`` with ``source: "wallet"``: a catalog order or a direct
payment paid from the caller's available balance (``wallets/spends.py``). Its path is the
orders collection's; it lives here because the spend is the wallet's, and the orders
package knows no purpose."""

from __future__ import annotations

from fastapi import APIRouter, Response

from payments_api import routes
from payments_api.deps import PrincipalDep, SessionDep, SettingsDep
from payments_api.kit import amounts
from payments_api.kit.idempotency import IdempotencyKeyDep, one_transaction
from payments_api.ledger import errors as ledger_errors
from payments_api.orders import errors as orders_errors
from payments_api.orders.schemas import OrderRead, WalletPaymentCreate
from payments_api.problems import problem_responses
from payments_api.projects import errors as projects_errors
from payments_api.wallets.spends import WalletPayments

router = APIRouter(tags=["orders"])


@router.post(
    "/api/v1/orders",
    summary="Pay a catalog order or a direct payment from the wallet",
    description='`source: "wallet"`: the order is paid from the caller\'s available '
    "balance in one transaction and answered `succeeded` (no Stripe call). 402 "
    "`insufficient_funds` when the available balance does not cover it and 409 "
    "`wallet_frozen` while the wallet is frozen, nothing written either way. `order`: a "
    "price that grants credit credits the buyer's wallet by it (`granted_credit`). "
    "`direct`: the payee's take (amount less the platform's application fee, the card "
    "rule) lands in the payee's available balance. Sends `order.paid`. Refunds "
    "(`POST /api/v1/admin/refunds`) go back to the wallet.",
    status_code=201,
    responses=problem_responses(
        400,
        401,
        403,
        ledger_errors.InsufficientFunds,
        ledger_errors.WalletFrozen,
        amounts.AmountOutOfRange,
        amounts.CurrencyNotSupported,
        orders_errors.DiscountCodeInvalid,
        orders_errors.PriceNotFound,
        *projects_errors.DIRECT_PAYMENT_PROBLEMS,
    ),
)
@one_transaction
async def pay_from_wallet(
    body: WalletPaymentCreate,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
    response: Response,
) -> OrderRead:
    order, replayed = await WalletPayments(session, settings, principal).pay(body, idempotency_key)
    routes.mark_replayed(response, replayed)
    return order
