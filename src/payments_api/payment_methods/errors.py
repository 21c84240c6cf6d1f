from __future__ import annotations

from payments_api.problems import ProblemError


class PaymentMethodNotFound(ProblemError):
    status = 404
    code = "payment_method_not_found"
    title = "No such saved payment method"


class PaymentMethodDetached(ProblemError):
    status = 409
    code = "payment_method_detached"
    title = "The payment method was removed"


class NoDefaultPaymentMethod(ProblemError):
    status = 422
    code = "no_default_payment_method"
    title = "The user has no default saved card for an off-session payment"
