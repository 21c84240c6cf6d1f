"""SetupIntents, saved PaymentMethods and PaymentIntents confirmed server-side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe
from payments_api.stripe.base import STRIPE_CALLS, GatewayBase
from payments_api.stripe.objects import PaymentIntent, PaymentMethod, SetupIntent


@dataclass(frozen=True, slots=True)
class ConfirmedIntent:
    """A PaymentIntent confirmed by the server: Stripe's object, and when the card was
    refused, the machine codes of the refusal (never Stripe's text)."""

    intent: PaymentIntent
    decline_code: str | None = None
    error_code: str | None = None


class PaymentMethodCalls(GatewayBase):
    async def create_setup_intent(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> SetupIntent:
        """A SetupIntent saving a card for later (``setup_intent:{setup_id}`` keys)."""
        return await self._request(
            SetupIntent, "setup_intents.create", params=params, idempotency_key=idempotency_key
        )

    async def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethod:
        return await self._request(PaymentMethod, "payment_methods.retrieve", payment_method_id)

    async def detach_payment_method(
        self, payment_method_id: str, *, idempotency_key: str
    ) -> PaymentMethod | None:
        """Detach a card from its customer; None when Stripe no longer has it attached
        (already detached or deleted): detaching is idempotent for the caller."""
        try:
            method = await self._client.v1.payment_methods.detach_async(
                payment_method_id, options=self._options(idempotency_key)
            )
        except stripe.InvalidRequestError as exc:
            if exc.code in ("resource_missing", "payment_method_unexpected_state") or (
                exc.http_status == 400 and "not attached" in str(exc.user_message or exc)
            ):
                STRIPE_CALLS.labels("payment_methods.detach", "already_detached").inc()
                return None
            STRIPE_CALLS.labels("payment_methods.detach", type(exc).__name__).inc()
            self._raise_mapped("payment_methods.detach", exc)
        except stripe.StripeError as exc:
            STRIPE_CALLS.labels("payment_methods.detach", type(exc).__name__).inc()
            self._raise_mapped("payment_methods.detach", exc)
        STRIPE_CALLS.labels("payment_methods.detach", "ok").inc()
        return self._typed("payment_methods.detach", PaymentMethod, method)

    async def create_confirmed_payment_intent(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> ConfirmedIntent:
        """Create and confirm a PaymentIntent (``confirm=true``, maybe ``off_session``).

        A card refusal is an answer here, not an error: Stripe's 402 carries the
        PaymentIntent (status ``requires_payment_method``) and the decline code, which
        the caller turns into the order's state (``authentication_required`` becomes
        ``requires_action``)."""
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options=self._options(idempotency_key),
            )
        except stripe.CardError as exc:
            STRIPE_CALLS.labels("payment_intents.create_confirm", "CardError").inc()
            error = exc.error
            raw_intent = getattr(error, "payment_intent", None) if error else None
            if raw_intent is None:
                self._raise_mapped("payment_intents.create_confirm", exc)
            return ConfirmedIntent(
                intent=self._typed("payment_intents.create_confirm", PaymentIntent, raw_intent),
                decline_code=(error.decline_code if error else None) or exc.code,
                error_code=exc.code,
            )
        except stripe.StripeError as exc:
            STRIPE_CALLS.labels("payment_intents.create_confirm", type(exc).__name__).inc()
            self._raise_mapped("payment_intents.create_confirm", exc)
        STRIPE_CALLS.labels("payment_intents.create_confirm", "ok").inc()
        return ConfirmedIntent(
            intent=self._typed("payment_intents.create_confirm", PaymentIntent, intent)
        )
