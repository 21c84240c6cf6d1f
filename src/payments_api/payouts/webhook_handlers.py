"""Stripe event handlers for withdrawals and payouts (see webhooks/registry.py)."""

from __future__ import annotations

from payments_api.webhooks.registry import EventHandler

# transfer.* events arrive on the platform endpoint.
PLATFORM_HANDLERS: dict[str, EventHandler] = {}
# payout.* events happen on connected accounts and arrive on the Connect endpoint.
CONNECT_HANDLERS: dict[str, EventHandler] = {}
