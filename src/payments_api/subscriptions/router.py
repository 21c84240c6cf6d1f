from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from payments_api import routes
from payments_api.deps import AdminUser, CurrentUser, SessionDep, SettingsDep, StateDep
from payments_api.kit.idempotency import IdempotencyKeyDep
from payments_api.kit.pagination import InvalidCursor, Limit
from payments_api.problems import problem_responses
from payments_api.stripe import errors as stripe_errors
from payments_api.subscriptions import errors
from payments_api.subscriptions.deps import SubscriptionServiceDep
from payments_api.subscriptions.plans import PlanCatalog, PlanSync
from payments_api.subscriptions.schemas import (
    PlanList,
    PlanSyncResult,
    ProrationPreview,
    SubscriptionCancel,
    SubscriptionChange,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionPause,
    SubscriptionRead,
    UnclaimedSubscriptionList,
)
from payments_api.subscriptions.views import SubscriptionQueries, unclaimed_subscriptions

router = APIRouter(tags=["subscriptions"])

SubscriptionId = Annotated[str, Path(max_length=32, examples=["subs_12"])]
SubscriptionPage = Annotated[routes.Page, routes.cursor_page("Subscription id to continue after.")]
# What every change to a subscription can answer: it goes to Stripe with the caller's key.
CHANGE_PROBLEMS = (400, 401, errors.SubscriptionNotFound, *routes.PROVIDER_PROBLEMS)
# What a change of plan, or its preview, refuses.
PLAN_CHANGE_PROBLEMS = (errors.SubscriptionNotActive, errors.PlanNotFound, errors.PlanChangeInvalid)


@router.get(
    "/api/v1/plans",
    summary="The active subscription plans",
    description="Recurring prices of active Stripe products, mirrored by `plans sync` and "
    "kept current by `product.*` / `price.*` events.",
    responses=problem_responses(401),
)
async def list_plans(_user: CurrentUser, session: SessionDep) -> PlanList:
    return await PlanCatalog(session).list_active()


@router.post(
    "/api/v1/admin/plans/sync",
    summary="Pull every product and recurring price from Stripe",
    tags=["admin"],
    responses=problem_responses(401, 403, *routes.PROVIDER_PROBLEMS),
)
async def sync_plans(_admin: AdminUser, state: StateDep) -> PlanSyncResult:
    return await PlanSync(state.sessionmaker, state.stripe).run()


@router.get(
    "/api/v1/admin/subscriptions/unclaimed",
    summary="Subscriptions made at Stripe for customers this service does not know",
    description="Subscriptions created outside this service (e.g. the Stripe dashboard) "
    "are adopted when their Stripe customer is one of our users; the others are listed "
    "here for review, newest first. They move no money until the customer is linked.",
    tags=["admin"],
    responses=problem_responses(401, 403, 422),
)
async def list_unclaimed_subscriptions(
    _admin: AdminUser, session: SessionDep, limit: Limit = 20
) -> UnclaimedSubscriptionList:
    return await unclaimed_subscriptions(session, limit=limit)


@router.post(
    "/api/v1/me/subscriptions",
    summary="Subscribe to a plan",
    description="Creates the Stripe subscription with `payment_behavior=default_incomplete`. "
    "When the customer must act (pay or authenticate the first invoice, or set up a card "
    "for a trial) the response carries `client_secret` to confirm with Stripe.js or the "
    "mobile SDKs; the status follows from Stripe's webhooks.",
    status_code=201,
    responses=problem_responses(
        400,
        401,
        errors.PlanNotFound,
        errors.SubscriptionExists,
        *routes.PROVIDER_PROBLEMS,
        stripe_errors.CardDeclined,
        stripe_errors.ProviderObjectMissing,
    ),
)
async def create_subscription(
    body: SubscriptionCreate, service: SubscriptionServiceDep, idempotency_key: IdempotencyKeyDep
) -> SubscriptionCreated:
    return await service.create(body, idempotency_key)


@router.get(
    "/api/v1/me/subscriptions",
    summary="The caller's subscriptions, newest first",
    responses=problem_responses(401, 422, InvalidCursor),
)
async def list_subscriptions(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, page: SubscriptionPage
) -> SubscriptionList:
    return await SubscriptionQueries(session, settings).list(user, **page)


@router.get(
    "/api/v1/me/subscriptions/{subscription_id}",
    summary="One of the caller's subscriptions",
    responses=problem_responses(401, errors.SubscriptionNotFound),
)
async def get_subscription(
    subscription_id: SubscriptionId, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> SubscriptionRead:
    return await SubscriptionQueries(session, settings).get(user, subscription_id)


@router.post(
    "/api/v1/me/subscriptions/{subscription_id}/cancel",
    summary="Cancel at the end of the period, or now",
    responses=problem_responses(*CHANGE_PROBLEMS, errors.SubscriptionNotActive),
)
async def cancel_subscription(
    subscription_id: SubscriptionId,
    body: SubscriptionCancel,
    service: SubscriptionServiceDep,
    idempotency_key: IdempotencyKeyDep,
) -> SubscriptionRead:
    return await service.cancel(subscription_id, body, idempotency_key)


@router.post(
    "/api/v1/me/subscriptions/{subscription_id}/resume",
    summary="Keep a subscription that was set to cancel at period end",
    responses=problem_responses(*CHANGE_PROBLEMS, errors.SubscriptionNotResumable),
)
async def resume_subscription(
    subscription_id: SubscriptionId,
    service: SubscriptionServiceDep,
    idempotency_key: IdempotencyKeyDep,
) -> SubscriptionRead:
    return await service.resume(subscription_id, idempotency_key)


@router.post(
    "/api/v1/me/subscriptions/{subscription_id}/pause",
    summary="Pause payment collection",
    description="Sets Stripe's `pause_collection` (default `behavior=void`: the paused "
    "periods' invoices are voided, nothing is charged and no plan credit is given). The "
    "status stays what Stripe says (usually `active`), `pause_collection` is set and "
    "`entitled` is false while paused. Stripe's `customer.subscription.updated` events "
    "keep it current (a `resumes_at` reached, a change made in the dashboard).",
    responses=problem_responses(
        *CHANGE_PROBLEMS, errors.SubscriptionNotActive, errors.SubscriptionPauseInvalid
    ),
)
async def pause_subscription(
    subscription_id: SubscriptionId,
    body: SubscriptionPause,
    service: SubscriptionServiceDep,
    idempotency_key: IdempotencyKeyDep,
) -> SubscriptionRead:
    return await service.pause(subscription_id, body, idempotency_key)


@router.post(
    "/api/v1/me/subscriptions/{subscription_id}/unpause",
    summary="Resume payment collection",
    description="Unsets `pause_collection`: the next invoice is collected as usual.",
    responses=problem_responses(*CHANGE_PROBLEMS, errors.SubscriptionNotPaused),
)
async def unpause_subscription(
    subscription_id: SubscriptionId,
    service: SubscriptionServiceDep,
    idempotency_key: IdempotencyKeyDep,
) -> SubscriptionRead:
    return await service.unpause(subscription_id, idempotency_key)


@router.get(
    "/api/v1/me/subscriptions/{subscription_id}/preview",
    summary="What changing to another price would charge (proration)",
    responses=problem_responses(
        401, 422, errors.SubscriptionNotFound, *PLAN_CHANGE_PROBLEMS, *routes.PROVIDER_PROBLEMS
    ),
)
async def preview_subscription_change(
    subscription_id: SubscriptionId,
    price: Annotated[str, Query(min_length=1, max_length=255, description="New Price id.")],
    service: SubscriptionServiceDep,
) -> ProrationPreview:
    return await service.preview(subscription_id, price)


@router.post(
    "/api/v1/me/subscriptions/{subscription_id}/change",
    summary="Change plan, prorated",
    description="Pass the preview's `proration_date` to be charged what it showed.",
    responses=problem_responses(*CHANGE_PROBLEMS, *PLAN_CHANGE_PROBLEMS),
)
async def change_subscription(
    subscription_id: SubscriptionId,
    body: SubscriptionChange,
    service: SubscriptionServiceDep,
    idempotency_key: IdempotencyKeyDep,
) -> SubscriptionRead:
    return await service.change(subscription_id, body, idempotency_key)
