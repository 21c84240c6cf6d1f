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
