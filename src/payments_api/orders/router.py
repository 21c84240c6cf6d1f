from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from payments_api import routes
from payments_api.deps import AdminUser, CurrentUser, SessionDep
from payments_api.kit import amounts
from payments_api.kit.idempotency import one_transaction
from payments_api.kit.pagination import InvalidCursor
from payments_api.orders import errors as orders_errors
from payments_api.orders.catalog import CatalogService
from payments_api.orders.reads import OrderQueries
from payments_api.orders.schemas import (
    DiscountCodeCreate,
    DiscountCodeRead,
    OrderList,
    OrderRead,
    PriceCreate,
    PriceList,
    PriceRead,
)
from payments_api.problems import problem_responses

router = APIRouter(tags=["orders"])

OrderPage = Annotated[routes.Page, routes.cursor_page("Order id to continue after.")]


@router.get(
    "/api/v1/orders",
    summary="The caller's pay-ins, newest first",
    responses=problem_responses(401, 422),
)
async def list_orders(user: CurrentUser, session: SessionDep, page: OrderPage) -> OrderList:
    return await OrderQueries(session).list(user, **page)


@router.get(
    "/api/v1/admin/orders/needs-review",
    summary="Paid pay-ins waiting for an operator",
    description="Orders Stripe reported paid with an amount or currency that differs from "
    "the order: nothing was credited (`review_reason`, `paid_amount`, `paid_currency`). "
    "Newest first; metric `payments_payins_needing_review_total`.",
    tags=["admin"],
    responses=problem_responses(401, 403, 422, InvalidCursor),
)
async def list_orders_needing_review(
    _admin: AdminUser, session: SessionDep, page: OrderPage
) -> OrderList:
    return await OrderQueries(session).needing_review(**page)


@router.get(
    "/api/v1/orders/{order_id}",
    summary="One of the caller's pay-ins",
    responses=problem_responses(401, orders_errors.OrderNotFound),
)
async def get_order(
    order_id: Annotated[str, Path(max_length=32, examples=["ord_42"])],
    user: CurrentUser,
    session: SessionDep,
) -> OrderRead:
    return await OrderQueries(session).get(user, order_id)


@router.get(
    "/api/v1/prices",
    summary="The active price catalog",
    responses=problem_responses(401),
)
async def list_prices(_user: CurrentUser, session: SessionDep) -> PriceList:
    return PriceList(data=await CatalogService(session).list_prices(active_only=True))


@router.post(
    "/api/v1/admin/prices",
    summary="Add a catalog price",
    tags=["admin"],
    status_code=201,
    responses=problem_responses(401, 403, 422, orders_errors.PriceExists, amounts.AmountNotInSteps),
)
@one_transaction
async def create_price(body: PriceCreate, _admin: AdminUser, session: SessionDep) -> PriceRead:
    return await CatalogService(session).create_price(body)


@router.post(
    "/api/v1/admin/prices/{lookup_key}/deactivate",
    summary="Withdraw a price from sale",
    tags=["admin"],
    responses=problem_responses(401, 403, 404, orders_errors.PriceNotFound),
)
@one_transaction
async def deactivate_price(
    lookup_key: Annotated[str, Path(max_length=64)], _admin: AdminUser, session: SessionDep
) -> PriceRead:
    return await CatalogService(session).set_price_active(lookup_key, False)


@router.post(
    "/api/v1/admin/discount-codes",
    summary="Create a discount code",
    tags=["admin"],
    status_code=201,
    responses=problem_responses(
        401,
        403,
        409,
        orders_errors.DiscountCodeInvalid,
        orders_errors.DiscountCodeExists,
        amounts.AmountNotInSteps,
    ),
)
@one_transaction
async def create_discount_code(
    body: DiscountCodeCreate, _admin: AdminUser, session: SessionDep
) -> DiscountCodeRead:
    return await CatalogService(session).create_discount(body)
