"""Errors of the sandbox's Stripe API, in Stripe's wire shape.

These are not the service's problems (``ProblemError``): the sandbox speaks Stripe's
protocol, so a refusal is ``{"error": {"type", "code", "message", "param"}}`` with
Stripe's HTTP status, and stripe-python turns it into the same exception as a real
Stripe refusal would.
"""

from __future__ import annotations

from typing import Any


class StripeApiError(Exception):
    """A Stripe API error response.

    ``stored``: whether an Idempotency-Key keeps this answer. Stripe stores the result
    of a request that started executing (a refusal such as a declined card or an
    over-refund) but not one whose parameters failed validation.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        stored: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.stored = stored
        self.extra = extra or {}
        """More of Stripe's error fields (a card error's ``payment_intent``)."""

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        if self.decline_code is not None:
            error["decline_code"] = self.decline_code
        error.update(self.extra)
        if request_id is not None:
            error["request_log_url"] = f"sandbox://requests/{request_id}"
        return {"error": error}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeApiError:
    """Parameters Stripe would reject before doing anything (not kept by a key)."""
    return StripeApiError(
        400, message, code=code or "parameter_invalid_empty", param=param, stored=False
    )


def missing_param(param: str) -> StripeApiError:
    return StripeApiError(
        400,
        f"Missing required param: {param}.",
        code="parameter_missing",
        param=param,
        stored=False,
    )


def no_such(resource: str, object_id: str, *, param: str | None = "id") -> StripeApiError:
    """Stripe's 404 for an unknown id; 400 when the id came in as a parameter."""
    status = 404 if param == "id" else 400
    return StripeApiError(
        status,
        f"No such {resource}: '{object_id}'",
        code="resource_missing",
        param=param,
        stored=param != "id",
    )


def refused(message: str, *, code: str | None, param: str | None = None) -> StripeApiError:
    """A request Stripe accepted and then refused (kept by its Idempotency-Key)."""
    return StripeApiError(400, message, code=code, param=param)
