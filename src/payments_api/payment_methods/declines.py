"""Stripe's decline and error codes mapped to the stable codes this API answers with.

Stripe has dozens of decline codes and adds more; clients get a short, stable list. Codes
that tell a fraudster something (``stolen_card``, ``fraudulent``, ``lost_card``,
``pickup_card``) are answered as plain ``card_declined``, as Stripe recommends.
"""

from __future__ import annotations

from payments_api.stripe.errors import CardDeclined

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


def decline_problem(stable_code: str) -> CardDeclined:
    """The 402 of a card charged server-side: ``code`` is always ``card_declined`` (one
    code, one status), ``decline_code`` the stable reason (``insufficient_funds``,
    ``expired_card``, ...), as the order's ``failure_code`` says too."""
    return CardDeclined(f"The card was declined ({stable_code}).", decline_code=stable_code)
