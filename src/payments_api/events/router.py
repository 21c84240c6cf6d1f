"""Event feeds, webhook endpoints (admin) and low-balance alerts.

Writes that only touch the database run in one transaction with their Idempotency-Key
(``@one_transaction``); registering and enabling an endpoint resolve its host name
first, a network call no transaction is held across, so they keep the lease protocol.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from payments_api import routes
from payments_api.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from payments_api.events import errors, schemas
from payments_api.events.service import EventService
from payments_api.events.types import EventType
from payments_api.kit.idempotency import IdempotencyKeyDep, one_transaction
from payments_api.kit.pagination import InvalidCursor
from payments_api.problems import problem_responses

router = APIRouter(tags=["events"])


async def get_event_service(session: SessionDep, settings: SettingsDep) -> EventService:
    return EventService(session, settings)


async def get_admin_event_service(_admin: AdminUser, service: EventServiceDep) -> EventService:
    """The event service for the routes that manage every user's events: admins only."""
    return service


EventServiceDep = Annotated[EventService, Depends(get_event_service)]
AdminEventServiceDep = Annotated[EventService, Depends(get_admin_event_service)]
EndpointIdPath = Annotated[
    str, Path(max_length=64, description="The endpoint id.", examples=["we_3"])
]
TypeFilter = Annotated[EventType | None, Query(description="Only events of this type.")]
EventPage = Annotated[routes.Page, routes.cursor_page("Event id to continue after.", max_length=64)]
EndpointPage = Annotated[
    routes.Page, routes.cursor_page("Endpoint id to continue after.", max_length=64)
]
DeliveryPage = Annotated[
    routes.Page, routes.cursor_page("Delivery id to continue after.", max_length=64)
]
# What every admin route on one webhook endpoint answers: not an admin, a malformed id
# or body, no such endpoint.
ENDPOINT_PROBLEMS = (401, 403, 422, errors.WebhookEndpointNotFound)


@router.get(
    "/api/v1/me/events",
    summary="The caller's events, newest first",
    description="Every change that concerns the caller, as signed deliveries carry it, for "
    "apps that poll. An escrow's payload shows only the caller's side of the money.",
    responses=problem_responses(401, 422, InvalidCursor),
)
async def list_my_events(
    user: CurrentUser, service: EventServiceDep, page: EventPage, type: TypeFilter = None
) -> schemas.EventList:
    return await service.feed(viewer_id=user.id, type=type, **page)


@router.get(
    "/api/v1/admin/events",
    summary="Every event, newest first",
    responses=problem_responses(401, 403, 422, InvalidCursor),
)
async def list_events(
    service: AdminEventServiceDep, page: EventPage, type: TypeFilter = None
) -> schemas.EventList:
    return await service.feed(viewer_id=None, type=type, **page)


@router.post(
    "/api/v1/admin/webhook-endpoints",
    summary="Register a URL to receive signed events",
    description="The response is the only place the signing secret (`whsec_…`) is shown. "
    "Deliveries follow the Standard Webhooks specification (docs/events.md).",
    status_code=201,
    responses=problem_responses(400, 401, 403, 422, errors.WebhookUrlRefused),
)
async def create_webhook_endpoint(
    body: schemas.WebhookEndpointCreate,
    service: AdminEventServiceDep,
    _idempotency_key: IdempotencyKeyDep,
) -> schemas.WebhookEndpointWithSecret:
    return await service.register(body)


@router.get(
    "/api/v1/admin/webhook-endpoints",
    summary="Registered webhook endpoints, newest first",
    responses=problem_responses(401, 403, 422, InvalidCursor),
)
async def list_webhook_endpoints(
    service: AdminEventServiceDep, page: EndpointPage
) -> schemas.WebhookEndpointList:
    return await service.list_endpoints(**page)


@router.get(
    "/api/v1/admin/webhook-endpoints/{endpoint_id}",
    summary="One webhook endpoint",
    responses=problem_responses(*ENDPOINT_PROBLEMS),
)
async def get_webhook_endpoint(
    endpoint_id: EndpointIdPath, service: AdminEventServiceDep
) -> schemas.WebhookEndpointRead:
    return await service.get_endpoint(endpoint_id)


@router.post(
    "/api/v1/admin/webhook-endpoints/{endpoint_id}/rotate-secret",
    summary="Replace the signing secret",
    description="The new secret is shown once. The old one keeps signing beside it for "
    "`overlap_seconds`, so receivers can switch without missing an event.",
    responses=problem_responses(400, *ENDPOINT_PROBLEMS),
)
@one_transaction
async def rotate_webhook_endpoint_secret(
    endpoint_id: EndpointIdPath,
    body: schemas.SecretRotation,
    service: AdminEventServiceDep,
    _idempotency_key: IdempotencyKeyDep,
) -> schemas.WebhookEndpointWithSecret:
    return await service.rotate_secret(endpoint_id, body)


@router.post(
    "/api/v1/admin/webhook-endpoints/{endpoint_id}/disable",
    summary="Stop deliveries to an endpoint (they wait until it is enabled)",
    responses=problem_responses(*ENDPOINT_PROBLEMS),
)
@one_transaction
async def disable_webhook_endpoint(
    endpoint_id: EndpointIdPath, service: AdminEventServiceDep
) -> schemas.WebhookEndpointRead:
    return await service.set_enabled(endpoint_id, enabled=False)


@router.post(
    "/api/v1/admin/webhook-endpoints/{endpoint_id}/enable",
    summary="Resume deliveries to an endpoint",
    responses=problem_responses(*ENDPOINT_PROBLEMS, errors.WebhookUrlRefused),
)
async def enable_webhook_endpoint(
    endpoint_id: EndpointIdPath, service: AdminEventServiceDep
) -> schemas.WebhookEndpointRead:
    return await service.set_enabled(endpoint_id, enabled=True)


@router.post(
    "/api/v1/admin/webhook-endpoints/{endpoint_id}/test",
    summary="Send a `webhook_endpoint.tested` event to this endpoint only",
    operation_id="testWebhookEndpoint",
    status_code=201,
    responses=problem_responses(400, *ENDPOINT_PROBLEMS),
)
@one_transaction
async def send_test_event(
    endpoint_id: EndpointIdPath,
    service: AdminEventServiceDep,
    idempotency_key: IdempotencyKeyDep,
) -> schemas.EventRead:
    return await service.send_test(endpoint_id, idempotency_key)


@router.get(
    "/api/v1/admin/webhook-endpoints/{endpoint_id}/deliveries",
    summary="Deliveries to an endpoint with their attempts, newest first",
    responses=problem_responses(*ENDPOINT_PROBLEMS, InvalidCursor),
)
async def list_webhook_deliveries(
    endpoint_id: EndpointIdPath, service: AdminEventServiceDep, page: DeliveryPage
) -> schemas.DeliveryList:
    return await service.deliveries(endpoint_id, **page)


@router.post(
    "/api/v1/admin/event-deliveries/{delivery_id}/redeliver",
    summary="Send a delivery again now",
    description="A failed delivery gets one more attempt; a pending one is due at once. "
    "The event keeps its id, so a receiver that already has it can drop the copy.",
    responses=problem_responses(401, 403, 422, errors.DeliveryNotFound),
)
@one_transaction
async def redeliver_event(
    delivery_id: Annotated[str, Path(max_length=64, examples=["del_9"])],
    service: AdminEventServiceDep,
) -> schemas.DeliveryRead:
    return await service.redeliver(delivery_id)


@router.put(
    "/api/v1/me/balance-alerts",
    summary="Set a low-balance threshold for one currency",
    description="`balance.low` is sent once when available falls below the threshold, and "
    "again only after it was back at or above it.",
    responses=problem_responses(401, 422),
)
@one_transaction
async def set_balance_alert(
    body: schemas.BalanceAlertSet, user: CurrentUser, service: EventServiceDep
) -> schemas.BalanceAlertRead:
    return await service.set_balance_alert(user.id, body)


@router.get(
    "/api/v1/me/balance-alerts",
    summary="The caller's low-balance thresholds",
    responses=problem_responses(401),
)
async def list_balance_alerts(
    user: CurrentUser, service: EventServiceDep
) -> list[schemas.BalanceAlertRead]:
    return await service.balance_alerts(user.id)
