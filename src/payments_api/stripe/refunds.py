"""Refunds, disputes, balance transactions (reconciliation)."""

from __future__ import annotations

from payments_api.stripe.base import GatewayBase


class RefundCalls(GatewayBase):
    pass
