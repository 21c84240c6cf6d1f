"""StripeGateway: the one object through which the service talks to Stripe.

It is assembled from one mixin per domain (customers, checkout, connect, ...) over
``GatewayBase``, which owns stripe-python's ``StripeClient`` on its httpx client, maps
errors to the service's problems and sends the caller's idempotency key on every write
(keys are derived from our own record ids: ``"{operation}:{row_id}"``).
"""

from __future__ import annotations

import stripe
from payments_api.stripe.base import STRIPE_API_VERSION, GatewayBase
from payments_api.stripe.billing import BillingCalls
from payments_api.stripe.checkout import CheckoutCalls
from payments_api.stripe.connect import ConnectCalls
from payments_api.stripe.customers import CustomerCalls
from payments_api.stripe.payment_methods import PaymentMethodCalls
from payments_api.stripe.payouts import PayoutCalls
from payments_api.stripe.refunds import RefundCalls

__all__ = [
    "STRIPE_API_VERSION",
    "GatewayBase",
    "InvalidWebhookSignature",
    "StripeGateway",
    "verify_webhook_signature",
]


class StripeGateway(
    CustomerCalls,
    CheckoutCalls,
    ConnectCalls,
    PayoutCalls,
    RefundCalls,
    PaymentMethodCalls,
    BillingCalls,
):
    """Every Stripe call of the service."""


class InvalidWebhookSignature(Exception):
    """The payload was not signed by Stripe with any of our endpoint secrets."""


def verify_webhook_signature(
    payload: bytes, signature_header: str | None, secrets: list[str], tolerance_seconds: int
) -> None:
    """Verify ``Stripe-Signature`` over the raw body with any of ``secrets`` (rotation).

    Raises :class:`InvalidWebhookSignature`; the body must not be parsed before this.
    """
    if not signature_header or not secrets:
        raise InvalidWebhookSignature("missing signature or no secret configured")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidWebhookSignature("payload is not UTF-8") from exc
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                text, signature_header, secret, tolerance=tolerance_seconds
            )
            return
        except stripe.SignatureVerificationError:
            continue
    raise InvalidWebhookSignature("no configured secret matches the signature")
