"""Feeds, endpoint management and low-balance alerts."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events import targets
from payments_api.events.errors import DeliveryNotFound, WebhookEndpointNotFound, WebhookUrlRefused
from payments_api.events.models import DeliveryAttempt, EventDelivery, OutboxEvent, WebhookEndpoint
from payments_api.events.outbox import DELIVER_JOB, emit
from payments_api.events.repository import EventRepository
from payments_api.events.schemas import (
    BalanceAlertRead,
    BalanceAlertSet,
    DeliveryAttemptRead,
    DeliveryList,
    DeliveryRead,
    EventData,
    EventList,
    EventRead,
    SecretRotation,
    WebhookEndpointCreate,
    WebhookEndpointList,
    WebhookEndpointRead,
    WebhookEndpointWithSecret,
)
from payments_api.events.types import DELIVERY_PREFIX, ENDPOINT_PREFIX, EVENT_PREFIX, EventType
from payments_api.jobs.queue import enqueue
from payments_api.kit.clock import utcnow
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.settings import Settings

# What each party of an escrow may not see of the other's side (as in escrow_read).
_ESCROW_CUSTOMER_SIDE = ("platform_fee_bps", "platform_fee_amount", "hold_amount")
_ESCROW_PAYEE_SIDE = ("service_fee_bps", "service_fee_amount", "payee_amount")


def new_secret() -> str:
    """24 random bytes, base64, with Standard Webhooks' ``whsec_`` prefix."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def as_seen_by(event_type: str, payload: dict[str, Any], viewer_id: str | None) -> dict[str, Any]:
    """The payload as ``viewer_id`` may see it (None: an admin, who sees everything)."""
    if viewer_id is None or not event_type.startswith("escrow."):
        return payload
    hidden: tuple[str, ...] = ()
    if viewer_id != payload.get("customer_id"):
        hidden += _ESCROW_CUSTOMER_SIDE
    if viewer_id != payload.get("payee_id"):
        hidden += _ESCROW_PAYEE_SIDE
    return {key: (None if key in hidden else value) for key, value in payload.items()}


def event_read(event: OutboxEvent, viewer_id: str | None = None) -> EventRead:
    return EventRead(
        id=public_id(EVENT_PREFIX, event.id),
        type=EventType(event.type),
        created_at=event.created_at,
        user_ids=list(event.user_ids) if viewer_id is None else [viewer_id],
        data=EventData(object=as_seen_by(event.type, event.payload, viewer_id)),
    )


def endpoint_read(endpoint: WebhookEndpoint) -> WebhookEndpointRead:
    return WebhookEndpointRead(
        id=public_id(ENDPOINT_PREFIX, endpoint.id),
        url=endpoint.url,
        description=endpoint.description,
        event_types=[EventType(value) for value in endpoint.event_types],
        status="enabled" if endpoint.status == "enabled" else "disabled",
        disabled_reason=endpoint.disabled_reason,
        failing_since=endpoint.failing_since,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
        created_at=endpoint.created_at,
    )


def delivery_read(
    delivery: EventDelivery, event_type: str, attempts: list[DeliveryAttempt]
) -> DeliveryRead:
    return DeliveryRead(
        id=public_id(DELIVERY_PREFIX, delivery.id),
        event_id=public_id(EVENT_PREFIX, delivery.event_id),
        event_type=EventType(event_type),
        endpoint_id=public_id(ENDPOINT_PREFIX, delivery.endpoint_id),
        status=delivery.status,
        attempt_count=delivery.attempt_count,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        created_at=delivery.created_at,
        attempts=[DeliveryAttemptRead.model_validate(a, from_attributes=True) for a in attempts],
    )


class EventService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.repository = EventRepository(session)

    # --- feeds ----------------------------------------------------------------------

    async def feed(
        self,
        *,
        viewer_id: str | None,
        type: EventType | None,
        limit: int,
        starting_after: str | None,
    ) -> EventList:
        rows = await self.repository.page(
            user_id=viewer_id,
            type=type.value if type else None,
            before_id=parse_cursor(EVENT_PREFIX, starting_after),
            limit=limit,
        )
        return EventList(
            data=[event_read(row, viewer_id) for row in rows[:limit]], has_more=len(rows) > limit
        )

    # --- endpoints ------------------------------------------------------------------

    async def _checked_url(self, url: str) -> str:
        try:
            await targets.resolve(
                url,
                require_https=self.settings.is_production,
                allow_private=self.settings.events_may_target_private_addresses,
            )
        except targets.TargetRefused as exc:
            raise WebhookUrlRefused(str(exc)) from exc
        return url

    async def _endpoint(self, endpoint_id: str, *, for_update: bool = False) -> WebhookEndpoint:
        parsed = parse_public_id(ENDPOINT_PREFIX, endpoint_id)
        endpoint = (
            None
            if parsed is None
            else await self.repository.endpoint(parsed, for_update=for_update)
        )
        if endpoint is None:
            raise WebhookEndpointNotFound(f"No webhook endpoint {endpoint_id!r}.")
        return endpoint

    async def register(self, body: WebhookEndpointCreate) -> WebhookEndpointWithSecret:
        endpoint = await self.repository.add_endpoint(
            WebhookEndpoint(
                url=await self._checked_url(body.url),
                description=body.description,
                event_types=sorted({t.value for t in body.event_types}),
                secret=new_secret(),
            )
        )
        return WebhookEndpointWithSecret(
            **endpoint_read(endpoint).model_dump(), secret=endpoint.secret
        )

    async def list_endpoints(
        self, *, limit: int, starting_after: str | None
    ) -> WebhookEndpointList:
        rows = await self.repository.endpoints(
            before_id=parse_cursor(ENDPOINT_PREFIX, starting_after), limit=limit
        )
        return WebhookEndpointList(
            data=[endpoint_read(row) for row in rows[:limit]], has_more=len(rows) > limit
        )

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpointRead:
        return endpoint_read(await self._endpoint(endpoint_id))

    async def rotate_secret(
        self, endpoint_id: str, body: SecretRotation
    ) -> WebhookEndpointWithSecret:
        endpoint = await self._endpoint(endpoint_id, for_update=True)
        now = utcnow()
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + timedelta(seconds=body.overlap_seconds)
        endpoint.secret = new_secret()
        endpoint.updated_at = now
        await self.session.flush()
        return WebhookEndpointWithSecret(
            **endpoint_read(endpoint).model_dump(), secret=endpoint.secret
        )

    async def set_enabled(self, endpoint_id: str, *, enabled: bool) -> WebhookEndpointRead:
        endpoint = await self._endpoint(endpoint_id, for_update=True)
        if enabled and endpoint.status != "enabled":
            await self._checked_url(endpoint.url)
            endpoint.status = "enabled"
            endpoint.disabled_reason = None
            endpoint.failing_since = None
        elif not enabled and endpoint.status == "enabled":
            endpoint.status = "disabled"
            endpoint.disabled_reason = "Disabled by an admin."
        endpoint.updated_at = utcnow()
        await self.session.flush()
        return endpoint_read(endpoint)

    async def send_test(self, endpoint_id: str, idempotency_key: str) -> EventRead:
        endpoint = await self._endpoint(endpoint_id)
        event_id = await emit(
            self.session,
            EventType.webhook_endpoint_tested,
            endpoint_read(endpoint),
            change_key=f"webhook_endpoint:{endpoint.id}:test:{idempotency_key}",
            only_endpoint=endpoint.id,
        )
        if event_id is None:  # a retry of the same test: the event it made
            row = await self.repository.by_change_key(
                f"webhook_endpoint:{endpoint.id}:test:{idempotency_key}"
            )
        else:
            row = await self.repository.get(event_id)
        if row is None:  # pragma: no cover - the insert or the earlier one committed it
            raise WebhookEndpointNotFound(f"No webhook endpoint {endpoint_id!r}.")
        return event_read(row)

    async def deliveries(
        self, endpoint_id: str, *, limit: int, starting_after: str | None
    ) -> DeliveryList:
        endpoint = await self._endpoint(endpoint_id)
        rows = await self.repository.deliveries(
            endpoint.id, before_id=parse_cursor(DELIVERY_PREFIX, starting_after), limit=limit
        )
        page = rows[:limit]
        attempts = await self.repository.attempts([delivery.id for delivery, _ in page])
        return DeliveryList(
            data=[
                delivery_read(delivery, event_type, attempts.get(delivery.id, []))
                for delivery, event_type in page
            ],
            has_more=len(rows) > limit,
        )

    async def redeliver(self, delivery_id: str) -> DeliveryRead:
        parsed = parse_public_id(DELIVERY_PREFIX, delivery_id)
        found = None if parsed is None else await self.repository.delivery(parsed)
        if found is None or parsed is None:
            raise DeliveryNotFound(f"No event delivery {delivery_id!r}.")
        if await self.repository.redeliver(parsed):
            await enqueue(self.session, DELIVER_JOB, f"delivery:{parsed}".encode())
            await self.session.refresh(found[0])
        attempts = await self.repository.attempts([parsed])
        return delivery_read(found[0], found[1], attempts.get(parsed, []))

    # --- balance alerts ---------------------------------------------------------------

    async def set_balance_alert(self, user_id: str, body: BalanceAlertSet) -> BalanceAlertRead:
        alert = await self.repository.set_balance_alert(user_id, body.currency, body.threshold)
        return BalanceAlertRead(
            currency=alert.currency, threshold=alert.threshold, below=alert.below
        )

    async def balance_alerts(self, user_id: str) -> list[BalanceAlertRead]:
        return [
            BalanceAlertRead(currency=a.currency, threshold=a.threshold, below=a.below)
            for a in await self.repository.balance_alerts(user_id)
        ]
