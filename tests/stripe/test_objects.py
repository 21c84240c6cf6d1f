"""The typed Stripe objects read Stripe's own shapes (tests/fixtures/stripe) and say
clearly what is missing when a payload does not fit."""

from __future__ import annotations

import pytest

from payments_api.stripe.objects import (
    Account,
    Charge,
    CheckoutSession,
    Dispute,
    MalformedStripeObject,
    PaymentIntent,
    Payout,
    Refund,
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


def test_a_charge_reads_its_embedded_refunds() -> None:
    refund = stripe_object("refund")
    data = {
        **stripe_object("charge"),
        "refunds": {"object": "list", "data": [refund], "has_more": False},
    }
    charge = parse_object(Charge, data)
    assert charge.refunds is not None
    assert [r.id for r in charge.refunds.data] == [refund["id"]]
    assert charge.refunds.data[0].amount == refund["amount"]


def test_a_charge_without_embedded_refunds() -> None:
    data = stripe_object("charge")
    del data["refunds"]  # API versions since 2022-11-15 leave them out
    assert parse_object(Charge, data).refunds is None


def test_a_refund_reads_stripes_example() -> None:
    data = stripe_object("refund")
    refund = parse_object(Refund, data)
    assert (refund.id, refund.amount, refund.status) == (data["id"], data["amount"], data["status"])


def test_a_dispute_keeps_only_its_balance_transaction_objects() -> None:
    data = {
        **stripe_object("dispute"),
        "balance_transactions": [
            {"id": "txn_1", "amount": -1_000, "fee": 1_500, "currency": "usd"},
            "txn_unexpanded",
        ],
    }
    dispute = parse_object(Dispute, data)
    assert [(t.id, t.amount, t.fee, t.net) for t in dispute.balance_transactions] == [
        ("txn_1", -1_000, 1_500, None)
    ]


def test_an_account_reads_stripes_example() -> None:
    data = stripe_object("account")
    account = parse_object(Account, data)
    assert account.id == data["id"]
    assert account.charges_enabled is data["charges_enabled"]
    assert account.requirements is not None
    assert account.requirements.currently_due == data["requirements"]["currently_due"]
    assert account.requirements.disabled_reason == data["requirements"]["disabled_reason"]
    assert account.settings is not None
    assert account.settings.payouts is not None
    assert account.settings.payouts.schedule == data["settings"]["payouts"]["schedule"]


def test_an_account_without_its_optional_parts() -> None:
    account = parse_object(Account, {"id": "acct_1", "object": "account", "metadata": None})
    assert account.metadata == {}
    assert account.requirements is None
    assert account.settings is None
    assert (account.charges_enabled, account.payouts_enabled) == (False, False)


def test_an_account_with_a_non_string_requirement_is_malformed() -> None:
    with pytest.raises(MalformedStripeObject, match=r"requirements\.currently_due"):
        parse_object(Account, {"id": "acct_1", "requirements": {"currently_due": [{"x": 1}]}})
