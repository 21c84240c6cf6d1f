"""Customers and balances."""

from __future__ import annotations

from typing import Any

from payments_api.stripe.base import GatewayBase
from payments_api.stripe.objects import Balance, Customer


class CustomerCalls(GatewayBase):
    async def create_customer(
        self, *, user_id: str, email: str | None, idempotency_key: str
    ) -> Customer:
        """Create the Stripe Customer of a user (one per user: see the callers' keys)."""
        params: Any = {"metadata": {"user_id": user_id}}
        if email:
            params["email"] = email
        return await self._request(
            Customer, "customers.create", params=params, idempotency_key=idempotency_key
        )

    async def retrieve_balance(self, *, stripe_account: str | None = None) -> Balance:
        return await self._request(Balance, "balance.retrieve", stripe_account=stripe_account)
