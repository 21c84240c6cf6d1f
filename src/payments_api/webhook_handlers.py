"""Which handler applies which Stripe event, per endpoint: the one place every domain's
``webhook_handlers.HANDLERS`` is merged. Explicit, no import magic.

It sits at the top of the package (like ``main.py`` and ``payins.py``), not in
``webhooks/``: it names every domain that reacts to Stripe, and those domains import
``webhooks.registry`` for the handler types, so a table inside ``webhooks/`` made the
inbox and every domain one import loop. ``main.create_app`` and the worker hand
``STRIPE_HANDLERS`` to the inbox (``webhooks.service.WebhookService``).
"""

from __future__ import annotations

from payments_api.disputes import webhook_handlers as dispute_handlers
from payments_api.escrow import webhook_handlers as escrow_handlers
from payments_api.orders import webhook_handlers as payin_handlers
from payments_api.payment_methods import webhook_handlers as payment_method_handlers
from payments_api.payout_accounts import webhook_handlers as payout_account_handlers
from payments_api.payouts import webhook_handlers as payout_handlers
from payments_api.refunds import webhook_handlers as refund_handlers
from payments_api.subscriptions import webhook_handlers as subscription_handlers
from payments_api.webhooks.registry import HandlerTable

STRIPE_HANDLERS = HandlerTable(
    # Platform events: our own charges, refunds, disputes and transfers.
    platform={
        **payin_handlers.HANDLERS,
        **escrow_handlers.HANDLERS,
        **payment_method_handlers.HANDLERS,
        **refund_handlers.HANDLERS,
        **dispute_handlers.HANDLERS,
        **payout_handlers.PLATFORM_HANDLERS,
        **subscription_handlers.HANDLERS,
    },
    # Connect events: things that happen on connected accounts (event.account is set).
    connect={
        **payout_account_handlers.HANDLERS,
        **payout_handlers.CONNECT_HANDLERS,
    },
)
