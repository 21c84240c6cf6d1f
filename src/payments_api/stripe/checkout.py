"""Checkout Sessions, PaymentIntents, charges and balance transactions."""

from __future__ import annotations

from payments_api.stripe.base import GatewayBase


class CheckoutCalls(GatewayBase):
    pass
