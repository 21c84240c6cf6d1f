"""Checkout Sessions, PaymentIntents, charges and balance transactions."""

from __future__ import annotations

from typing import Any

from payments_api.stripe.base import GatewayBase


class CheckoutCalls(GatewayBase):
    async def create_checkout_session(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Create a Checkout Session (``checkout_session:{order_id}`` keys make it once)."""
        session = await self._call(
            "checkout.sessions.create",
            lambda: self._client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options=self._options(idempotency_key),
            ),
        )
        return session.to_dict()

    async def create_payment_intent(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        intent = await self._call(
            "payment_intents.create",
            lambda: self._client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options=self._options(idempotency_key),
            ),
        )
        return intent.to_dict()

    async def retrieve_charge_with_fee(self, charge_id: str) -> dict[str, Any]:
        """A charge with its balance transaction expanded (Stripe's fee lives there)."""
        charge = await self._call(
            "charges.retrieve",
            lambda: self._client.v1.charges.retrieve_async(
                charge_id, params={"expand": ["balance_transaction"]}
            ),
        )
        return charge.to_dict()
