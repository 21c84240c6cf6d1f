"""The service's own errors for Stripe failures. Stripe's message never reaches a client."""

from __future__ import annotations

from payments_api.problems import ProblemError


class PaymentProviderError(ProblemError):
    status = 502
    code = "payment_provider_error"
    title = "The payment provider rejected the request"


class PaymentProviderUnavailable(ProblemError):
    status = 503
    code = "payment_provider_unavailable"
    title = "The payment provider is unavailable; retry later"

    def __init__(self, detail: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class CardDeclined(ProblemError):
    status = 402
    code = "card_declined"
    title = "The card was declined"


class ProviderObjectMissing(ProblemError):
    """Stripe has no object by an id the client gave (a payment method, a list cursor):
    the client's mistake, not the provider's failure. ``param`` names the field."""

    status = 422
    code = "provider_object_missing"
    title = "An object the request names does not exist at the payment provider"
