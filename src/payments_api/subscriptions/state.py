"""Stripe's subscription objects applied to our rows: each row keeps the Unix time of
the Stripe state it holds (``stripe_state_at``), so an older event never overwrites a
newer state; what changed is told to the apps as outgoing events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.kit.clock import stripe_time as stripe_time  # stripe_events reads it here
from payments_api.kit.clock import utcnow
from payments_api.settings import Settings
from payments_api.stripe.refs import stripe_id
from payments_api.subscriptions.models import Subscription
from payments_api.subscriptions.views import SubscriptionViews

TERMINAL = frozenset({"canceled", "incomplete_expired"})


def our_subscription_id(metadata: Any) -> int | None:
    raw = (metadata or {}).get("subscription_id") if isinstance(metadata, dict) else None
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


class SubscriptionState:
    """Applies Stripe's subscription objects to our rows, newest state wins, and emits
    the outgoing events of what changed. Runs in the caller's transaction."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.views = SubscriptionViews(session, settings)

    async def apply(self, row: Subscription, obj: dict[str, Any], state_at: int) -> bool:
        """Apply ``obj`` (Stripe's subscription as of ``state_at``); False when it is
        older than what the row holds."""
        status = str(obj.get("status") or row.status)
        stored_at = row.stripe_state_at
        if stored_at is not None and state_at < stored_at:
            return False  # an older event: the row holds a newer state
        if row.status in TERMINAL and status != row.status and stored_at is not None:
            return False  # canceled and expired subscriptions never come back at Stripe
        if stored_at == state_at and status == "incomplete" and row.status != "incomplete":
            # Same second: the creation's snapshot never undoes what followed it.
            return False
        before = (row.status, row.cancel_at_period_end, row.stripe_price_id, row.pause_behavior)
        first_seen = row.stripe_subscription_id is None
        row.stripe_subscription_id = row.stripe_subscription_id or stripe_id(obj.get("id"))
        items = ((obj.get("items") or {}).get("data")) or []
        item = items[0] if items else {}
        if item:
            row.stripe_item_id = stripe_id(item.get("id")) or row.stripe_item_id
            row.stripe_price_id = stripe_id(item.get("price")) or row.stripe_price_id
        row.current_period_start = stripe_time(
            item.get("current_period_start", obj.get("current_period_start"))
        )
        row.current_period_end = stripe_time(
            item.get("current_period_end", obj.get("current_period_end"))
        )
        row.trial_end = stripe_time(obj.get("trial_end"))
        row.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
        row.canceled_at = stripe_time(obj.get("canceled_at"))
        row.ended_at = stripe_time(obj.get("ended_at"))
        row.latest_invoice_id = stripe_id(obj.get("latest_invoice")) or row.latest_invoice_id
        pause = obj.get("pause_collection")
        if isinstance(pause, dict) and pause.get("behavior"):
            row.pause_behavior = str(pause["behavior"])[:24]
            row.pause_resumes_at = stripe_time(pause.get("resumes_at"))
        elif "pause_collection" in obj:
            row.pause_behavior = row.pause_resumes_at = None
        if status == "past_due":
            if row.status != "past_due" or row.past_due_since is None:
                row.past_due_since = datetime.fromtimestamp(state_at, UTC)
        else:
            row.past_due_since = None
        row.status = status
        row.stripe_state_at = state_at
        row.updated_at = utcnow()
        await self.session.flush()
        read = await self.views.one(row)
        if first_seen and row.stripe_subscription_id is not None:
            await emit(
                self.session,
                EventType.subscription_created,
                read,
                change_key=f"subscription:{row.id}:created",
                user_ids=[row.user_id],
            )
        after = (row.status, row.cancel_at_period_end, row.stripe_price_id, row.pause_behavior)
        if after != before and not first_seen:
            await emit(
                self.session,
                EventType.subscription_updated,
                read,
                change_key=f"subscription:{row.id}:updated:{state_at}:"
                f"{row.status}:{int(row.cancel_at_period_end)}:{row.stripe_price_id}:"
                f"{row.pause_behavior or ''}",
                user_ids=[row.user_id],
            )
        if row.status == "canceled" and before[0] != "canceled":
            await emit(
                self.session,
                EventType.subscription_canceled,
                read,
                change_key=f"subscription:{row.id}:canceled",
                user_ids=[row.user_id],
            )
        return True
