"""Stripe's subscription objects applied to our rows: each row keeps the Unix time of
the Stripe state it holds (``stripe_state_at``), so an older event never overwrites a
newer state; what changed is told to the apps as outgoing events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.owner_events import tell_owner
from payments_api.events.types import EventType
from payments_api.kit.clock import stripe_time as stripe_time  # stripe_events reads it here
from payments_api.kit.clock import utcnow
from payments_api.settings import Settings
from payments_api.stripe.billing_objects import Subscription as StripeSubscription
from payments_api.subscriptions.models import Subscription
from payments_api.subscriptions.views import SubscriptionViews

TERMINAL = frozenset({"canceled", "incomplete_expired"})


def our_subscription_id(metadata: dict[str, str]) -> int | None:
    raw = metadata.get("subscription_id")
    if raw is not None and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


class SubscriptionState:
    """Applies Stripe's subscription objects to our rows, newest state wins, and emits
    the outgoing events of what changed. Runs in the caller's transaction."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.views = SubscriptionViews(session, settings)

    async def apply(self, row: Subscription, obj: StripeSubscription, state_at: int) -> bool:
        """Apply ``obj`` (Stripe's subscription as of ``state_at``); False when it is
        older than what the row holds."""
        status = obj.status
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
        row.stripe_subscription_id = row.stripe_subscription_id or obj.id
        item = obj.first_item
        period_start, period_end = obj.current_period_start, obj.current_period_end
        if item is not None:
            row.stripe_item_id = item.id
            row.stripe_price_id = item.price.id if item.price is not None else row.stripe_price_id
            # The pinned API version keeps the period on the item; older ones on the
            # subscription.
            if item.current_period_start is not None:
                period_start = item.current_period_start
            if item.current_period_end is not None:
                period_end = item.current_period_end
        row.current_period_start = stripe_time(period_start)
        row.current_period_end = stripe_time(period_end)
        row.trial_end = stripe_time(obj.trial_end)
        row.cancel_at_period_end = obj.cancel_at_period_end
        row.canceled_at = stripe_time(obj.canceled_at)
        row.ended_at = stripe_time(obj.ended_at)
        row.latest_invoice_id = obj.latest_invoice_id or row.latest_invoice_id
        pause = obj.pause_collection
        if pause is not None and pause.behavior:
            row.pause_behavior = pause.behavior[:24]
            row.pause_resumes_at = stripe_time(pause.resumes_at)
        elif "pause_collection" in obj.model_fields_set:
            # Stripe sends ``null`` once collection resumes; an object without the field
            # says nothing about it.
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
        for event, change in changes_told(row, before, first_seen=first_seen, state_at=state_at):
            await tell_owner(self.session, event, read, row, kind="subscription", step=change)
        return True


def changes_told(
    row: Subscription, before: tuple[Any, ...], *, first_seen: bool, state_at: int
) -> list[tuple[EventType, str]]:
    """The outgoing events of one applied state, in order, each with what its change key
    says after the subscription's id: created once, updated when status, period end
    cancellation, price or pause changed, canceled once."""
    changes: list[tuple[EventType, str]] = []
    if first_seen and row.stripe_subscription_id is not None:
        changes.append((EventType.subscription_created, "created"))
    after = (row.status, row.cancel_at_period_end, row.stripe_price_id, row.pause_behavior)
    if after != before and not first_seen:
        updated = (
            f"updated:{state_at}:{row.status}:{int(row.cancel_at_period_end)}:"
            f"{row.stripe_price_id}:{row.pause_behavior or ''}"
        )
        changes.append((EventType.subscription_updated, updated))
    if row.status == "canceled" and before[0] != "canceled":
        changes.append((EventType.subscription_canceled, "canceled"))
    return changes
