from __future__ import annotations

from payments_api.problems import ProblemError

# The detail of ``IdempotencyKeyReused`` when a payment's key comes back with another
# body: card pay-ins and wallet payments keep their keys on the same orders table.
KEY_USED_FOR_ANOTHER_PAYMENT = "This Idempotency-Key was used for a different payment."


class OrderNotFound(ProblemError):
    status = 404
    code = "order_not_found"
    title = "No such order"


class RedirectUrlNotAllowed(ProblemError):
    status = 422
    code = "redirect_url_not_allowed"
    title = "The redirect URL's origin is not an allowed frontend origin"


class PriceNotFound(ProblemError):
    status = 422
    code = "price_not_found"
    title = "No such active price"


class DiscountCodeInvalid(ProblemError):
    status = 422
    code = "discount_code_invalid"
    title = "The discount code does not exist, is not valid now, or is used up"


class CheckoutWindowPassed(ProblemError):
    status = 409
    code = "checkout_window_passed"
    title = "This payment attempt is too old to resume"


class PriceExists(ProblemError):
    status = 409
    code = "price_exists"
    title = "A price with this lookup key exists"


class DiscountCodeExists(ProblemError):
    status = 409
    code = "discount_code_exists"
    title = "A discount code with this code exists"
