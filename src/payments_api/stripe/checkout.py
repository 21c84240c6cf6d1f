"""Checkout Sessions, PaymentIntents, charges and balance transactions."""

from __future__ import annotations

from typing import Any

from payments_api.stripe.base import GatewayBase
from payments_api.stripe.objects import ChargeWithFee, CheckoutSession, PaymentIntent


class CheckoutCalls(GatewayBase):
    async def create_checkout_session(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> CheckoutSession:
        """Create a Checkout Session (``checkout_session:{order_id}`` keys make it once)."""
        return await self._request(
            CheckoutSession,
            "checkout.sessions.create",
            params=params,
            idempotency_key=idempotency_key,
        )

    async def create_payment_intent(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> PaymentIntent:
        return await self._request(
            PaymentIntent, "payment_intents.create", params=params, idempotency_key=idempotency_key
        )

    async def retrieve_charge_with_fee(self, charge_id: str) -> ChargeWithFee:
        """A charge with its balance transaction expanded (Stripe's fee lives there)."""
        return await self._request(
            ChargeWithFee,
            "charges.retrieve",
            charge_id,
            params={"expand": ["balance_transaction"]},
        )

    async def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent:
        return await self._request(PaymentIntent, "payment_intents.retrieve", payment_intent_id)

    async def capture_payment_intent(
        self, payment_intent_id: str, *, amount_to_capture: int, idempotency_key: str
    ) -> PaymentIntent:
        """Capture (all or part of) an authorized PaymentIntent; Stripe releases the
        uncaptured rest. Keys ``escrow_capture:{escrow_id}:{round}``."""
        return await self._request(
            PaymentIntent,
            "payment_intents.capture",
            payment_intent_id,
            params={"amount_to_capture": amount_to_capture},
            idempotency_key=idempotency_key,
        )

    async def cancel_payment_intent(
        self, payment_intent_id: str, *, idempotency_key: str
    ) -> PaymentIntent:
        """Cancel a PaymentIntent: an uncaptured authorization is released at the card.
        Keys ``escrow_release:{escrow_id}``."""
        return await self._request(
            PaymentIntent,
            "payment_intents.cancel",
            payment_intent_id,
            params={"cancellation_reason": "requested_by_customer"},
            idempotency_key=idempotency_key,
        )
