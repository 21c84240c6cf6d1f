"""The typed Stripe objects read Stripe's own shapes (tests/fixtures/stripe) and say
clearly what is missing when a payload does not fit."""

from __future__ import annotations

import pytest

from payments_api.stripe.objects import (
    CheckoutSession,
    MalformedStripeObject,
    PaymentIntent,
    Payout,
    SetupIntent,
    Transfer,
    parse_object,
)
from tests.helpers import stripe_object


def test_a_payment_intent_reads_stripes_example() -> None:
    data = stripe_object("payment_intent")
    intent = parse_object(PaymentIntent, data)
    assert intent.id == data["id"]
    assert intent.amount == data["amount"]
    assert intent.currency == data["currency"]
    assert intent.status == data["status"]
    assert intent.metadata == data["metadata"]


def test_an_expanded_reference_is_read_as_its_id() -> None:
    data = stripe_object("payment_intent")
    charge = stripe_object("charge")
    unexpanded = parse_object(PaymentIntent, {**data, "latest_charge": charge["id"]})
    expanded = parse_object(PaymentIntent, {**data, "latest_charge": charge})
    assert unexpanded.latest_charge == charge["id"]
    assert expanded.latest_charge == charge["id"]


def test_a_checkout_session_with_an_expanded_payment_intent() -> None:
    session = stripe_object("checkout.session")
    intent = stripe_object("payment_intent")
    parsed = parse_object(CheckoutSession, {**session, "payment_intent": intent})
    assert parsed.payment_intent == intent["id"]
    assert parsed.amount_total == session["amount_total"]


def test_missing_optional_fields_take_stripes_defaults() -> None:
    intent = parse_object(
        PaymentIntent,
        {"id": "pi_1", "amount": 500, "currency": "usd", "status": "processing", "metadata": None},
    )
    assert intent.metadata == {}
    assert intent.amount_received == 0
    assert intent.latest_charge is None
    assert intent.last_payment_error is None


def test_a_payment_error_keeps_only_the_machine_codes() -> None:
    data = {
        **stripe_object("payment_intent"),
        "last_payment_error": {
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        },
    }
    error = parse_object(PaymentIntent, data).last_payment_error
    assert error is not None
    assert (error.code, error.decline_code) == ("card_declined", "insufficient_funds")
    assert not hasattr(error, "message")


@pytest.mark.parametrize(
    ("model", "fixture"),
    [(SetupIntent, "setup_intent"), (Transfer, "transfer"), (Payout, "payout")],
)
def test_the_other_objects_read_stripes_examples(model: type, fixture: str) -> None:
    data = stripe_object(fixture)
    assert parse_object(model, data).id == data["id"]


def test_a_wrong_type_names_the_field_not_the_value() -> None:
    data = {**stripe_object("payment_intent"), "amount": "12 dollars"}
    with pytest.raises(MalformedStripeObject) as raised:
        parse_object(PaymentIntent, data)
    assert str(raised.value) == "PaymentIntent without the expected amount"
    assert "12 dollars" not in str(raised.value)


def test_a_missing_field_and_a_non_object_are_malformed() -> None:
    data = stripe_object("payment_intent")
    del data["currency"]
    with pytest.raises(MalformedStripeObject, match="expected currency"):
        parse_object(PaymentIntent, data)
    with pytest.raises(MalformedStripeObject, match="expected shape"):
        parse_object(PaymentIntent, ["not", "an", "object"])
