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
        customer = await self._call(
            "customers.create",
            lambda: self._client.v1.customers.create_async(
                params=params, options=self._options(idempotency_key)
            ),
        )
        return self._typed("customers.create", Customer, customer)

    async def retrieve_balance(self, *, stripe_account: str | None = None) -> Balance:
        balance = await self._call(
            "balance.retrieve",
            lambda: self._client.v1.balance.retrieve_async(
                options=self._options(stripe_account=stripe_account)
            ),
        )
        return self._typed("balance.retrieve", Balance, balance)
