"""Stripe Billing: products, recurring prices, subscriptions and invoices."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

import stripe
from payments_api.stripe.base import GatewayBase
from payments_api.stripe.billing_objects import (
    Invoice,
    InvoicePayment,
    InvoicePreview,
    Price,
    Product,
    Subscription,
)
from payments_api.stripe.errors import PaymentProviderError

log = logging.getLogger(__name__)

# What the subscribe call expands: the first invoice's confirmation secret (the
# PaymentIntent's client secret the customer confirms when they must act; the pinned API
# version has no ``invoice.payment_intent``) and, for a trial, the SetupIntent.
SUBSCRIPTION_EXPAND = ["latest_invoice.confirmation_secret", "pending_setup_intent"]

# Stripe's card error when paying an invoice needs the customer's authentication: the
# invoice's PaymentIntent is left ``requires_action`` for the customer to confirm.
INVOICE_REQUIRES_ACTION = "invoice_payment_intent_requires_action"


class BillingCalls(GatewayBase):
    async def list_products(self) -> list[Product]:
        """Every product, active or archived (all pages)."""
        return await self._list_every(Product, "products.list", {"limit": 100})

    async def list_recurring_prices(self) -> list[Price]:
        """Every recurring price, active or archived (all pages)."""
        return await self._list_every(Price, "prices.list", {"limit": 100, "type": "recurring"})

    async def retrieve_product(self, product_id: str) -> Product:
        return await self._request(Product, "products.retrieve", product_id)

    async def create_subscription(
        self, params: dict[str, Any], *, idempotency_key: str
    ) -> Subscription:
        """Create a subscription (``subscription:{row id}`` keys make it once)."""
        return await self._request(
            Subscription,
            "subscriptions.create",
            params={**params, "expand": SUBSCRIPTION_EXPAND},
            idempotency_key=idempotency_key,
            client_ids=frozenset({"default_payment_method", "payment_method"}),
        )

    async def retrieve_subscription(self, subscription_id: str) -> Subscription:
        return await self._request(
            Subscription,
            "subscriptions.retrieve",
            subscription_id,
            params={"expand": SUBSCRIPTION_EXPAND},
        )

    async def update_subscription(
        self, subscription_id: str, params: dict[str, Any], *, idempotency_key: str
    ) -> Subscription:
        return await self._request(
            Subscription,
            "subscriptions.update",
            subscription_id,
            params=params,
            idempotency_key=idempotency_key,
        )

    async def cancel_subscription(
        self, subscription_id: str, *, idempotency_key: str
    ) -> Subscription:
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
        return self._typed("subscriptions.cancel", Subscription, subscription)

    async def pay_invoice(
        self, invoice_id: str, *, payment_method: str, idempotency_key: str
    ) -> Invoice | None:
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
        return None if invoice is None else self._typed("invoices.pay", Invoice, invoice)

    async def preview_invoice(self, params: dict[str, Any]) -> InvoicePreview:
        """The invoice a change would produce (``POST /v1/invoices/create_preview``);
        creates nothing, so it carries no idempotency key."""
        invoice = await self._call(
            "invoices.create_preview",
            lambda: self._client.v1.invoices.create_preview_async(
                params=params,  # type: ignore[arg-type]
            ),
        )
        # Read like _typed reads an object, but a preview is not one (it may have no id).
        try:
            return InvoicePreview.model_validate(invoice.to_dict())
        except ValidationError as exc:
            log.error("stripe invoices.create_preview answered a malformed preview")
            raise PaymentProviderError("The payment provider answered unexpectedly.") from exc

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
        for item in page.data:
            payment = self._typed("invoice_payments.list", InvoicePayment, item)
            if payment.status == "paid" and payment.charge is not None:
                return payment.charge
        return None
