from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request

from payments_api import routes
from payments_api.deps import AdminSessionDep, AdminUser, state_of
from payments_api.kit.pagination import Limit
from payments_api.problems import problem_responses
from payments_api.webhooks import errors as webhooks_errors
from payments_api.webhooks.errors import WebhookProcessingFailed
from payments_api.webhooks.registry import HandlerTable
from payments_api.webhooks.schemas import WebhookAck, WebhookEventList, WebhookEventRead
from payments_api.webhooks.service import Endpoint, WebhookEventAdmin, WebhookService

router = APIRouter(tags=["webhooks"])

_EVENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A Stripe Event object, signed by Stripe (Stripe-Signature header).",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


async def get_webhook_service(request: Request) -> WebhookService:
    # The handler table names every domain: main.create_app builds it (the inbox imports
    # no domain), like the gauges health refreshes. The state is read off the request,
    # not through StateDep: each dependency FastAPI solves is a share of a delivery's CPU.
    handlers: HandlerTable = request.app.state.webhook_handlers
    state = state_of(request)
    return WebhookService(state.sessionmaker, state.stripe, state.settings, handlers)


WebhookServiceDep = Annotated[WebhookService, Depends(get_webhook_service)]
SignatureHeader = Annotated[
    str | None, Header(alias="Stripe-Signature", description="Stripe's signature header.")
]


async def _receive(
    endpoint: Endpoint, request: Request, service: WebhookService, signature: str | None
) -> WebhookAck:
    # The raw bytes, exactly as Stripe signed them: verified before any parsing.
    outcome = await service.receive(endpoint, await request.body(), signature)
    if outcome == "failed":
        raise WebhookProcessingFailed("The event is stored and will be retried.")
    return WebhookAck(status=outcome)


@router.post(
    "/api/v1/webhooks/stripe",
    summary="Stripe webhook endpoint for platform events",
    openapi_extra=_EVENT_BODY,
    responses=problem_responses(
        404,
        webhooks_errors.WebhookPayloadInvalid,
        webhooks_errors.WebhookProcessingFailed,
        webhooks_errors.WebhookSignatureInvalid,
    ),
)
async def receive_stripe_webhook(
    request: Request, service: WebhookServiceDep, stripe_signature: SignatureHeader = None
) -> WebhookAck:
    return await _receive("platform", request, service, stripe_signature)


@router.post(
    "/api/v1/webhooks/stripe/connect",
    summary="Stripe webhook endpoint for connected-account events",
    openapi_extra=_EVENT_BODY,
    responses=problem_responses(
        404, webhooks_errors.WebhookPayloadInvalid, webhooks_errors.WebhookSignatureInvalid
    ),
)
async def receive_stripe_connect_webhook(
    request: Request, service: WebhookServiceDep, stripe_signature: SignatureHeader = None
) -> WebhookAck:
    return await _receive("connect", request, service, stripe_signature)


def _read(row: Any) -> WebhookEventRead:
    return WebhookEventRead.model_validate(row, from_attributes=True)


@router.get(
    "/api/v1/admin/webhook-events",
    summary="Stored Stripe events, newest first",
    tags=["admin"],
    responses=problem_responses(401, 403, 422, webhooks_errors.WebhookEventNotFound),
)
async def list_webhook_events(
    session: AdminSessionDep,
    limit: Limit = 20,
    status: Annotated[
        Literal["received", "processed", "failed", "ignored"] | None,
        Query(description="Only events in this state (e.g. failed)."),
    ] = None,
    starting_after: Annotated[str | None, Query(description="Event id to continue after.")] = None,
) -> WebhookEventList:
    rows = await WebhookEventAdmin(session).page(
        status=status, limit=limit, starting_after=starting_after
    )
    return WebhookEventList(data=[_read(r) for r in rows[:limit]], has_more=len(rows) > limit)


@router.post(
    "/api/v1/admin/webhook-events/{event_id}/replay",
    summary="Apply a stored event again (handlers are idempotent)",
    tags=["admin"],
    responses=problem_responses(401, 403, webhooks_errors.WebhookEventNotFound),
)
async def replay_webhook_event(
    event_id: Annotated[str, Path(max_length=255)],
    admin: AdminUser,
    service: WebhookServiceDep,
    request_id: routes.RequestIdDep,
) -> WebhookEventRead:
    row = await service.replay(event_id, actor_id=admin.id, request_id=request_id)
    return _read(row)
