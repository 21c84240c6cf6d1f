"""Stripe's test cards (https://docs.stripe.com/testing) as the sandbox plays them.

The sandbox never keeps a card number: a PaymentMethod holds brand, last four digits,
expiry and a fingerprint, and the fingerprint tells the sandbox which test card it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

# What a charge does: succeed, ask for 3-D Secure (on-session), or decline with a code.
Outcome = Literal[
    "success",
    "3ds_required",
    "authentication_required",
    "decline",
    "insufficient_funds",
    "expired_card",
]
SetupOutcome = Literal["succeed", "authenticate", "decline", "expired_card"]


@dataclass(frozen=True, slots=True)
class TestCard:
    brand: str
    setup: SetupOutcome
    on_session: Outcome
    off_session: Outcome
    label: str


TEST_CARDS: dict[str, TestCard] = {
    "4242424242424242": TestCard("visa", "succeed", "success", "success", "Succeeds"),
    "5555555555554444": TestCard("mastercard", "succeed", "success", "success", "Succeeds"),
    # Stripe: authenticate unless set up for off-session use.
    "4000002500003155": TestCard(
        "visa",
        "authenticate",
        "3ds_required",
        "success",
        "Requires authentication (3-D Secure at setup; off-session payments then succeed)",
    ),
    # Stripe: always authenticate; off-session it declines with authentication_required.
    "4000002760003184": TestCard(
        "visa",
        "authenticate",
        "3ds_required",
        "authentication_required",
        "Always requires authentication (off-session: authentication_required)",
    ),
    "4000000000009995": TestCard(
        "visa", "succeed", "insufficient_funds", "insufficient_funds", "Insufficient funds"
    ),
    "4000000000000341": TestCard(
        "visa", "succeed", "decline", "decline", "Saves, then every charge is declined"
    ),
    "4000000000000002": TestCard("visa", "decline", "decline", "decline", "Declined"),
    "4000000000000069": TestCard(
        "visa", "expired_card", "expired_card", "expired_card", "Expired card"
    ),
}

# Stripe's test PaymentMethod ids and the card each stands for.
TEST_PAYMENT_METHOD_CARDS: dict[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_authenticationRequiredOnSetup": "4000002500003155",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_visa_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
}


def fingerprint(number: str) -> str:
    """The same number always has the same fingerprint, as at Stripe."""
    return hashlib.sha256(f"sandbox-card:{number}".encode()).hexdigest()[:16]


_BY_FINGERPRINT = {fingerprint(number): number for number in TEST_CARDS}


def card_of_fingerprint(value: str | None) -> TestCard | None:
    number = _BY_FINGERPRINT.get(value or "")
    return TEST_CARDS[number] if number else None


def outcome(card: TestCard, *, off_session: bool) -> Outcome:
    return card.off_session if off_session else card.on_session
