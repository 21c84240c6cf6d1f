"""The inbox's recovery paths, driven directly (as the worker drives them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from payments_api.webhook_handlers import STRIPE_HANDLERS
from payments_api.webhooks.models import WebhookEvent
from payments_api.webhooks.service import WebhookService, retry_delay
from tests.factories import create_user
from tests.helpers import make_event, stripe_object
from tests.webhooks.test_router import pending_order_for_existing_user


def _row(event: dict[str, Any], *, status: str, received_at: datetime) -> WebhookEvent:
    return WebhookEvent(
        id=event["id"],
        endpoint="platform",
        type=event["type"],
        created=datetime.fromtimestamp(event["created"], UTC),
        livemode=False,
        payload=event,
        status=status,
        received_at=received_at,
        next_attempt_at=received_at if status == "failed" else None,
    )


class TestWebhookService:
    def test_backoff_grows_and_is_capped(self) -> None:
        assert retry_delay(1) == timedelta(seconds=30)
        assert retry_delay(2) == timedelta(seconds=60)
        assert retry_delay(30) == timedelta(hours=6)

    async def test_sweep_applies_stranded_and_due_events(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        await create_user(session, id="sweep-user")
        order = await pending_order_for_existing_user(session, "sweep-user")
        intent = stripe_object("payment_intent")
        intent.update(
            id=f"pi_{uuid.uuid4().hex[:10]}",
            amount=2_000,
            amount_received=2_000,
            currency="usd",
            latest_charge=None,
            metadata={"order_id": str(order.id)},
        )
        stranded = make_event("payment_intent.succeeded", intent)
        long_ago = datetime.now(UTC) - timedelta(minutes=10)
        session.add(_row(stranded, status="received", received_at=long_ago))
        unknown = make_event("customer.created", stripe_object("customer"))
        session.add(_row(unknown, status="failed", received_at=long_ago))
        await session.flush()

        service = WebhookService(sessionmaker, gateway, settings, STRIPE_HANDLERS)
        assert await service.sweep() == 2
        for event_id, status in ((stranded["id"], "processed"), (unknown["id"], "ignored")):
            row = await session.get(WebhookEvent, event_id, populate_existing=True)
            assert row is not None
            assert row.status == status
        # a second sweep finds nothing to do
        assert await service.sweep() == 0

    async def test_prune_keeps_unapplied_events(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        old = datetime.now(UTC) - timedelta(days=settings.webhook_retention_days + 1)
        done = make_event("customer.created", stripe_object("customer"))
        failing = make_event("customer.created", stripe_object("customer"))
        session.add(_row(done, status="processed", received_at=old))
        session.add(_row(failing, status="failed", received_at=old))
        await session.flush()
        assert await WebhookService(sessionmaker, gateway, settings, STRIPE_HANDLERS).prune() >= 1
        assert await session.get(WebhookEvent, done["id"], populate_existing=True) is None
        assert await session.get(WebhookEvent, failing["id"], populate_existing=True) is not None
