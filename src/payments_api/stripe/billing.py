"""Stripe Billing: products, recurring prices, subscriptions and invoices."""

from __future__ import annotations

from typing import Any

import stripe
from payments_api.stripe.base import GatewayBase

# What the subscribe call expands: the first invoice's confirmation secret (the
# PaymentIntent's client secret the customer confirms when they must act; the pinned API
# version has no ``invoice.payment_intent``) and, for a trial, the SetupIntent.
SUBSCRIPTION_EXPAND = ["latest_invoice.confirmation_secret", "pending_setup_intent"]

# Stripe's card error when paying an invoice needs the customer's authentication: the
# invoice's PaymentIntent is left ``requires_action`` for the customer to confirm.
INVOICE_REQUIRES_ACTION = "invoice_payment_intent_requires_action"


class BillingCalls(GatewayBase):
    async def list_products(self) -> list[dict[str, Any]]:
        """Every product, active or archived (all pages)."""
        page = await self._call(
            "products.list",
            lambda: self._client.v1.products.list_async(params={"limit": 100}),
        )
        return [product.to_dict() async for product in page.auto_paging_iter()]

    async def list_recurring_prices(self) -> list[dict[str, Any]]:
        """Every recurring price, active or archived (all pages)."""
        page = await self._call(
            "prices.list",
            lambda: self._client.v1.prices.list_async(params={"limit": 100, "type": "recurring"}),
        )
        return [price.to_dict() async for price in page.auto_paging_iter()]

    async def retrieve_product(self, product_id: str) -> dict[str, Any]:
        product = await self._call(
            "products.retrieve", lambda: self._client.v1.products.retrieve_async(product_id)
        )
        return product.to_dict()

    async def create_subscription(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Create a subscription (``subscription:{row id}`` keys make it once)."""
        subscription = await self._call(
            "subscriptions.create",
            lambda: self._client.v1.subscriptions.create_async(
                params={**params, "expand": SUBSCRIPTION_EXPAND},  # type: ignore[arg-type]
                options=self._options(idempotency_key),
            ),
            client_ids=frozenset({"default_payment_method", "payment_method"}),
        )
        return subscription.to_dict()

    async def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        subscription = await self._call(
            "subscriptions.retrieve",
            lambda: self._client.v1.subscriptions.retrieve_async(
                subscription_id,
                params={"expand": SUBSCRIPTION_EXPAND},
            ),
        )
        return subscription.to_dict()

    async def update_subscription(
        self, subscription_id: str, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        subscription = await self._call(
            "subscriptions.update",
            lambda: self._client.v1.subscriptions.update_async(
                subscription_id,
                params=params,  # type: ignore[arg-type]
                options=self._options(idempotency_key),
            ),
        )
        return subscription.to_dict()

    async def cancel_subscription(
        self, subscription_id: str, *, idempotency_key: str
    ) -> dict[str, Any]:
        """Cancel now (``DELETE /v1/subscriptions/{id}``).

        Stripe replays only POSTs by their idempotency key: the retry of a cancel whose
        answer was lost finds the subscription canceled and is refused. A refusal is
        therefore checked against the subscription itself; canceled means the cancel
        (ours, or one made in the dashboard meanwhile) took effect, and that is the
        answer."""

        async def cancel() -> stripe.Subscription:
            try:
                return await self._client.v1.subscriptions.cancel_async(
                    subscription_id, options=self._options(idempotency_key)
                )
            except stripe.InvalidRequestError:
                current = await self._client.v1.subscriptions.retrieve_async(
                    subscription_id, params={"expand": SUBSCRIPTION_EXPAND}
                )
                if current.status == "canceled":
                    return current
                raise

        subscription = await self._call("subscriptions.cancel", cancel)
        return subscription.to_dict()

    async def pay_invoice(
        self, invoice_id: str, *, payment_method: str, idempotency_key: str
    ) -> dict[str, Any] | None:
        """Pay an open invoice now with the customer's card (``POST
        /v1/invoices/{id}/pay``), the customer present (``off_session=false``); None when
        the card needs the customer's authentication (the invoice stays open, its
        PaymentIntent ``requires_action``). A decline is ``CardDeclined``."""

        async def pay() -> stripe.Invoice | None:
            try:
                return await self._client.v1.invoices.pay_async(
                    invoice_id,
                    params={"payment_method": payment_method, "off_session": False},
                    options=self._options(idempotency_key),
                )
            except stripe.CardError as exc:
                if exc.code == INVOICE_REQUIRES_ACTION:
                    return None
                raise

        invoice = await self._call("invoices.pay", pay, client_ids=frozenset({"payment_method"}))
        return None if invoice is None else invoice.to_dict()

    async def preview_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        """The invoice a change would produce (``POST /v1/invoices/create_preview``);
        creates nothing, so it carries no idempotency key."""
        invoice = await self._call(
            "invoices.create_preview",
            lambda: self._client.v1.invoices.create_preview_async(
                params=params,  # type: ignore[arg-type]
            ),
        )
        return invoice.to_dict()

    async def invoice_charge(self, invoice_id: str) -> str | None:
        """The charge that paid an invoice, through its invoice payments."""
        page = await self._call(
            "invoice_payments.list",
            lambda: self._client.v1.invoice_payments.list_async(
                params={
                    "invoice": invoice_id,
                    "expand": ["data.payment.payment_intent"],
                }
            ),
        )
        for payment in page.to_dict().get("data", []):
            if payment.get("status") != "paid":
                continue
            detail = payment.get("payment") or {}
            charge = detail.get("charge")
            if isinstance(charge, dict):
                charge = charge.get("id")
            if isinstance(charge, str):
                return charge
            intent = detail.get("payment_intent")
            if isinstance(intent, dict):
                latest = intent.get("latest_charge")
                if isinstance(latest, dict):
                    latest = latest.get("id")
                if isinstance(latest, str):
                    return latest
        return None
