from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from payments_api import routes
from payments_api.deps import AdminSessionDep, PrincipalDep
from payments_api.escrow import errors as escrow_errors
from payments_api.kit import amounts
from payments_api.kit.idempotency import IdempotencyKeyDep
from payments_api.ledger import errors as ledger_errors
from payments_api.orders import errors as orders_errors
from payments_api.orders import refund_errors as refunds_errors
from payments_api.problems import problem_responses
from payments_api.refunds import escrow_refunds, invoices
from payments_api.refunds.deps import CashoutServiceDep, InvoiceRefundServiceDep, RefundServiceDep
from payments_api.refunds.reads import RefundQueries
from payments_api.refunds.schemas import (
    RefundCreate,
    RefundList,
    RefundRead,
    WalletRefundCreate,
    WalletRefundList,
    WalletRefundRead,
)

router = APIRouter(tags=["admin"])

WalletRefundPage = Annotated[routes.Page, routes.cursor_page("Wallet refund id to continue after.")]
RefundStatus = Literal["pending", "requires_action", "succeeded", "failed", "canceled"]


class RefundFilters(routes.Page):
    order_id: str | None
    status: RefundStatus | None
    invoice_id: str | None
    escrow_id: str | None


# The admin's list of refunds: of one order, one subscription invoice or one job, or all.
OrderFilter = Annotated[str | None, Query(max_length=32, description="Only this order's refunds.")]
StatusFilter = Annotated[RefundStatus | None, Query(description="Only refunds in this state.")]
InvoiceFilter = Annotated[
    str | None, Query(max_length=255, description="Only this subscription invoice's refunds.")
]
EscrowFilter = Annotated[
    str | None,
    Query(
        max_length=32,
        description="Only this job's refunds: a card-paid job's are its funding order's "
        "(`rfd_…`), a wallet-paid job's its own (`rfe_…`, which appear only here).",
    ),
]
RefundPage = Annotated[
    RefundFilters,
    routes.cursor_page(
        "Refund id to continue after.",
        order_id=OrderFilter,
        status=StatusFilter,
        invoice_id=InvoiceFilter,
        escrow_id=EscrowFilter,
    ),
]


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
    "`refund_not_supported` (cancel it instead). Such a job may also be named by "
    "`escrow_id` instead of its order. A completed job paid from the wallet (it has no "
    "order: name it by `escrow_id`) reverses its settlement the same way straight back "
    "into the customer's wallet, at once and with no Stripe call since no card was "
    "charged (201 `succeeded`, `rfe_…` id); refundable up to the hold (price plus "
    "platform fee) less what was refunded.\n\n"
    "With `invoice_id` instead of `order_id`, a paid subscription invoice is refunded "
    "(its PaymentIntent, key derived from the refund's id, `rfi_…` ids): the revenue "
    "comes back out of sales and the plan credit the invoice granted is taken back in "
    "proportion (held from the wallet meanwhile). When the subscriber has spent it the "
    "request is refused (`refund_credit_spent`) unless `force` is true, in which case the "
    "platform bears the spent part. Stripe keeps its fee.",
    status_code=201,
    responses=routes.pending_responses(
        RefundRead,
        "Accepted; Stripe's answer pending",
        400,
        401,
        403,
        422,
        orders_errors.OrderNotFound,
        escrow_errors.EscrowNotFound,
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
        *routes.PROVIDER_PROBLEMS,
    ),
)
async def create_refund(
    body: RefundCreate,
    request_id: routes.RequestIdDep,
    principal: routes.AdminPrincipalDep,
    service: RefundServiceDep,
    invoice_service: InvoiceRefundServiceDep,
    idempotency_key: IdempotencyKeyDep,
    response: Response,
) -> RefundRead:
    if body.invoice_id is not None:
        refund, known = await invoice_service.create(
            principal, body, idempotency_key, request_id=request_id
        )
    else:
        refund, known = await service.create(
            principal, body, idempotency_key, request_id=request_id
        )
    routes.accepted_unless_known(response, known)
    return refund


@router.get(
    "/api/v1/admin/refunds",
    summary="Refunds, newest first",
    responses=problem_responses(401, 403, 422),
)
async def list_refunds(session: AdminSessionDep, page: RefundPage) -> RefundList:
    limit, starting_after = page["limit"], page["starting_after"]
    if page["escrow_id"] is not None:
        return await RefundQueries(session).list_for_escrow(
            escrow_id=page["escrow_id"],
            limit=limit,
            starting_after=starting_after,
            status=page["status"],
        )
    if page["invoice_id"] is not None:
        return await invoices.InvoiceRefundQueries(session).list(
            limit=limit, starting_after=starting_after, invoice_id=page["invoice_id"]
        )
    return await RefundQueries(session).list(
        limit=limit, starting_after=starting_after, order_id=page["order_id"], status=page["status"]
    )


@router.get(
    "/api/v1/admin/refunds/{refund_id}",
    summary="One refund",
    responses=problem_responses(401, 403, refunds_errors.RefundNotFound),
)
async def get_refund(
    refund_id: Annotated[str, routes.public_id_path("rfd_3")],
    session: AdminSessionDep,
) -> RefundRead:
    if refund_id.startswith(f"{invoices.INVOICE_REFUND_PREFIX}_"):
        return await invoices.InvoiceRefundQueries(session).get(refund_id)
    if refund_id.startswith(f"{escrow_refunds.ESCROW_REFUND_PREFIX}_"):
        return await escrow_refunds.get_escrow_refund(session, refund_id)
    return await RefundQueries(session).get(refund_id)


@router.post(
    "/api/v1/me/wallet/refunds",
    tags=["wallets"],
    summary="Cash out unspent top-up money to the cards it came from",
    description="Splits `amount` over the caller's top-up charges, newest first, each "
    "only within Stripe's refund window (`wallet_refund_window_days`, 180 by default) and "
    "only up to what is not refunded or being refunded yet; one Stripe Refund per charge. "
    "The amount leaves `available` at once for `refunding` (see the balance) and is "
    "final when Stripe confirms each refund (by its answer or its webhook); a refund that "
    "fails gives its part back to `available`. Refused with nothing written: "
    "`insufficient_funds` (more than available), `nothing_refundable` (no top-up charge "
    "left to refund), `refund_exceeds_refundable` (more than the charges can take back), "
    "`wallet_frozen`, and the currency's cash-out limits (`amount_out_of_range`). 201 when "
    "Stripe answered for every charge; 202 when some answer is not known yet (retried "
    "with the same key, never refunded twice). Sends `wallet_refund.created`, then "
    "`wallet_refund.succeeded` or `wallet_refund.failed`.",
    status_code=201,
    responses=routes.pending_responses(
        WalletRefundRead,
        "Accepted; some Stripe answer pending",
        400,
        401,
        422,
        ledger_errors.InsufficientFunds,
        ledger_errors.WalletFrozen,
        refunds_errors.NothingRefundable,
        refunds_errors.RefundExceedsRefundable,
        *routes.AMOUNT_PROBLEMS,
    ),
)
async def create_wallet_refund(
    body: WalletRefundCreate,
    principal: PrincipalDep,
    service: CashoutServiceDep,
    idempotency_key: IdempotencyKeyDep,
    response: Response,
) -> WalletRefundRead:
    cashout, known = await service.create(principal, body, idempotency_key)
    routes.accepted_unless_known(response, known)
    return cashout


@router.get(
    "/api/v1/me/wallet/refunds",
    tags=["wallets"],
    summary="The caller's wallet cash-outs, newest first",
    responses=problem_responses(401, 422),
)
async def list_wallet_refunds(
    principal: PrincipalDep, service: CashoutServiceDep, page: WalletRefundPage
) -> WalletRefundList:
    return await service.list(principal.sub, **page)


@router.get(
    "/api/v1/me/wallet/refunds/{wallet_refund_id}",
    tags=["wallets"],
    summary="One of the caller's wallet cash-outs",
    responses=problem_responses(401, refunds_errors.WalletRefundNotFound),
)
async def get_wallet_refund(
    wallet_refund_id: Annotated[str, routes.public_id_path("wrf_4")],
    principal: PrincipalDep,
    service: CashoutServiceDep,
) -> WalletRefundRead:
    return await service.get(principal.sub, wallet_refund_id)
