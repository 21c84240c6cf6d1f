"""Which handler applies which Stripe event, per endpoint. Explicit, no import magic."""

from __future__ import annotations

from payments_api.orders import webhook_handlers as payin_handlers
from payments_api.webhooks.registry import EventHandler

PLATFORM_HANDLERS: dict[str, EventHandler] = {
    **payin_handlers.HANDLERS,
}

CONNECT_HANDLERS: dict[str, EventHandler] = {}


def handler_for(endpoint: str, event_type: str) -> EventHandler | None:
    handlers = PLATFORM_HANDLERS if endpoint == "platform" else CONNECT_HANDLERS
    return handlers.get(event_type)
