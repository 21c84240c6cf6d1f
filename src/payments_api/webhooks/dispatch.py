"""Which handler applies which Stripe event, per endpoint. Explicit, no import magic."""

from __future__ import annotations

from payments_api.disputes import webhook_handlers as dispute_handlers
from payments_api.escrow import webhook_handlers as escrow_handlers
from payments_api.orders import webhook_handlers as payin_handlers
from payments_api.payment_methods import webhook_handlers as payment_method_handlers
from payments_api.payout_accounts import webhook_handlers as payout_account_handlers
from payments_api.payouts import webhook_handlers as payout_handlers
from payments_api.refunds import webhook_handlers as refund_handlers
from payments_api.subscriptions import webhook_handlers as subscription_handlers
from payments_api.webhooks.registry import EventHandler

# Platform events: our own charges, refunds, disputes and transfers.
PLATFORM_HANDLERS: dict[str, EventHandler] = {
    **payin_handlers.HANDLERS,
    **escrow_handlers.HANDLERS,
    **payment_method_handlers.HANDLERS,
    **refund_handlers.HANDLERS,
    **dispute_handlers.HANDLERS,
    **payout_handlers.PLATFORM_HANDLERS,
    **subscription_handlers.HANDLERS,
}

# Connect events: things that happen on connected accounts (event.account is set).
CONNECT_HANDLERS: dict[str, EventHandler] = {
    **payout_account_handlers.HANDLERS,
    **payout_handlers.CONNECT_HANDLERS,
}


def handler_for(endpoint: str, event_type: str) -> EventHandler | None:
    handlers = PLATFORM_HANDLERS if endpoint == "platform" else CONNECT_HANDLERS
    return handlers.get(event_type)
