"""Stripe's decline and error codes mapped to the stable codes this API answers with.

Stripe has dozens of decline codes and adds more; clients get a short, stable list. Codes
that tell a fraudster something (``stolen_card``, ``fraudulent``, ``lost_card``,
``pickup_card``) are answered as plain ``card_declined``, as Stripe recommends.
"""

from __future__ import annotations

from payments_api.problems import ProblemError

_STABLE: dict[str, str] = {
    "insufficient_funds": "insufficient_funds",
    "authentication_required": "authentication_required",
    "authentication_not_handled": "authentication_required",
    "payment_intent_authentication_failure": "authentication_failed",
    "expired_card": "expired_card",
    "incorrect_cvc": "incorrect_cvc",
    "invalid_cvc": "incorrect_cvc",
    "incorrect_number": "incorrect_number",
    "invalid_number": "incorrect_number",
    "invalid_expiry_month": "expired_card",
    "invalid_expiry_year": "expired_card",
    "processing_error": "processing_error",
    "card_velocity_exceeded": "card_velocity_exceeded",
    "withdrawal_count_limit_exceeded": "card_velocity_exceeded",
    "currency_not_supported": "card_not_supported",
    "card_not_supported": "card_not_supported",
}

STABLE_DECLINE_CODES: tuple[str, ...] = ("card_declined", *sorted(set(_STABLE.values())))


def stable_decline_code(code: str | None) -> str:
    """The API's code for a Stripe ``decline_code`` or error ``code`` (default
    ``card_declined``)."""
    return _STABLE.get(code or "", "card_declined")


class PaymentDeclined(ProblemError):
    """Base of the 402 answers of a card charged server-side; ``code`` is stable."""

    status = 402
    code = "card_declined"
    title = "The card was declined"


class InsufficientFunds(PaymentDeclined):
    code = "insufficient_funds"
    title = "The card has insufficient funds"


class ExpiredCard(PaymentDeclined):
    code = "expired_card"
    title = "The card has expired"


class IncorrectCvc(PaymentDeclined):
    code = "incorrect_cvc"
    title = "The card's security code is incorrect"


class IncorrectNumber(PaymentDeclined):
    code = "incorrect_number"
    title = "The card number is incorrect"


class AuthenticationRequired(PaymentDeclined):
    code = "authentication_required"
    title = "The card needs the customer to authenticate"


class AuthenticationFailed(PaymentDeclined):
    code = "authentication_failed"
    title = "The customer did not authenticate the payment"


class ProcessingError(PaymentDeclined):
    code = "processing_error"
    title = "The card could not be processed; try again"


class CardVelocityExceeded(PaymentDeclined):
    code = "card_velocity_exceeded"
    title = "The card's limit was exceeded"


class CardNotSupported(PaymentDeclined):
    code = "card_not_supported"
    title = "The card does not support this payment"


DECLINE_PROBLEMS: tuple[type[PaymentDeclined], ...] = (
    PaymentDeclined,
    InsufficientFunds,
    ExpiredCard,
    IncorrectCvc,
    IncorrectNumber,
    AuthenticationRequired,
    AuthenticationFailed,
    ProcessingError,
    CardVelocityExceeded,
    CardNotSupported,
)
_BY_CODE = {problem.code: problem for problem in DECLINE_PROBLEMS}


def decline_problem(stable_code: str) -> PaymentDeclined:
    problem = _BY_CODE.get(stable_code, PaymentDeclined)
    return problem(f"The payment was declined ({stable_code}).")
