"""Stripe event handlers of this domain (see webhooks/registry.py)."""

from __future__ import annotations

from payments_api.webhooks.registry import EventHandler

HANDLERS: dict[str, EventHandler] = {}
