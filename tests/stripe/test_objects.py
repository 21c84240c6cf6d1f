"""The typed Stripe objects read Stripe's own shapes (tests/fixtures/stripe) and say
clearly what is missing when a payload does not fit."""

from __future__ import annotations

import pytest

from payments_api.stripe.objects import (
    Account,
    AccountLink,
    ApplicationFee,
    Balance,
    BalanceTransaction,
    Charge,
    ChargeWithFee,
    CheckoutSession,
    Customer,
    Dispute,
    LoginLink,
    MalformedStripeObject,
    PaymentIntent,
    PaymentMethod,
    Payout,
    PayoutList,
    Refund,
    SetupIntent,
    Transfer,
    UndeliveredEvent,
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
    [
        (SetupIntent, "setup_intent"),
        (Transfer, "transfer"),
        (Payout, "payout"),
        (Customer, "customer"),
        (PaymentMethod, "payment_method"),
        (UndeliveredEvent, "event"),
    ],
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


def test_a_created_payment_intent_carries_its_secret_and_next_step() -> None:
    data = {
        **stripe_object("payment_intent"),
        "next_action": {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": "https://bank.example/3ds", "return_url": None},
        },
    }
    intent = parse_object(PaymentIntent, data)
    assert intent.client_secret == data["client_secret"]
    assert intent.next_action is not None
    assert intent.next_action.type == "redirect_to_url"
    assert intent.next_action.redirect_to_url is not None
    assert intent.next_action.redirect_to_url.url == "https://bank.example/3ds"
    assert parse_object(PaymentIntent, {**data, "next_action": None}).next_action is None


def test_a_created_checkout_session_and_setup_intent() -> None:
    session_data = stripe_object("checkout.session")
    session = parse_object(CheckoutSession, session_data)
    assert (session.url, session.expires_at) == (session_data["url"], session_data["expires_at"])
    intent_data = stripe_object("setup_intent")
    intent = parse_object(SetupIntent, intent_data)
    assert (intent.status, intent.client_secret) == (
        intent_data["status"],
        intent_data["client_secret"],
    )


def test_a_card_payment_method_reads_its_card() -> None:
    data = stripe_object("payment_method")
    method = parse_object(PaymentMethod, {**data, "customer": {"id": "cus_1", "object": "x"}})
    assert (method.type, method.customer) == ("card", "cus_1")
    assert method.card is not None
    card = data["card"]
    assert (method.card.last4, method.card.fingerprint) == (card["last4"], card["fingerprint"])
    assert (method.card.exp_month, method.card.exp_year) == (card["exp_month"], card["exp_year"])
    assert (method.card.brand, method.card.display_brand) == (card["brand"], card["display_brand"])
    assert parse_object(PaymentMethod, {**data, "type": "sepa_debit", "card": None}).card is None


def test_a_balance_reads_its_amounts_per_currency() -> None:
    data = {
        **stripe_object("balance"),
        "available": [{"amount": 1_200, "currency": "usd", "source_types": {"card": 1_200}}],
        "pending": [{"amount": -5, "currency": "eur"}],
    }
    balance = parse_object(Balance, data)
    assert [(a.amount, a.currency) for a in balance.available] == [(1_200, "usd")]
    assert [(a.amount, a.currency) for a in balance.pending] == [(-5, "eur")]
    with pytest.raises(MalformedStripeObject, match=r"available\.0\.amount"):
        parse_object(Balance, {**data, "available": [{"currency": "usd"}]})


def test_links_read_their_url() -> None:
    link = stripe_object("account_link")
    parsed = parse_object(AccountLink, link)
    assert (parsed.url, parsed.expires_at) == (link["url"], link["expires_at"])
    assert parse_object(LoginLink, stripe_object("login_link")).url == link["url"]
    with pytest.raises(MalformedStripeObject, match="LoginLink without the expected url"):
        parse_object(LoginLink, {"object": "login_link"})


def test_a_charge_with_its_fee_expanded_or_not_yet_settled() -> None:
    data = stripe_object("charge")
    transaction = stripe_object("balance_transaction")
    settled = parse_object(ChargeWithFee, {**data, "balance_transaction": transaction})
    assert settled.balance_transaction is not None
    assert (settled.balance_transaction.id, settled.balance_transaction.fee) == (
        transaction["id"],
        transaction["fee"],
    )
    assert settled.balance_transaction.currency == transaction["currency"]
    unexpanded = parse_object(ChargeWithFee, {**data, "balance_transaction": transaction["id"]})
    assert unexpanded.balance_transaction is None
    assert (
        parse_object(ChargeWithFee, {**data, "balance_transaction": None}).balance_transaction
        is None
    )


def test_a_page_of_payouts() -> None:
    payout = stripe_object("payout")
    page = parse_object(
        PayoutList, {"object": "list", "data": [payout], "has_more": True, "url": "/v1/payouts"}
    )
    assert page.has_more is True
    assert [(p.id, p.amount, p.status) for p in page.data] == [
        (payout["id"], payout["amount"], payout["status"])
    ]
    with pytest.raises(MalformedStripeObject, match=r"data\.0\.status"):
        parse_object(PayoutList, {"data": [{**payout, "status": None}]})


def test_an_undelivered_event_needs_its_type_and_time() -> None:
    event = stripe_object("event")
    parsed = parse_object(UndeliveredEvent, event)
    assert (parsed.id, parsed.type, parsed.created) == (
        event["id"],
        event["type"],
        event["created"],
    )
    with pytest.raises(MalformedStripeObject, match="expected created"):
        parse_object(UndeliveredEvent, {**event, "created": None})


def test_a_balance_transaction_with_its_source_expanded_or_not() -> None:
    data = stripe_object("balance_transaction")
    unexpanded = parse_object(BalanceTransaction, data)
    assert (unexpanded.type, unexpanded.amount, unexpanded.net) == (
        data["type"],
        data["amount"],
        data["net"],
    )
    assert unexpanded.source is not None
    assert unexpanded.source.id == data["source"]
    assert unexpanded.source.payment_intent is None
    charge = {**stripe_object("charge"), "payment_intent": "pi_1", "transfer": {"id": "tr_1"}}
    expanded = parse_object(BalanceTransaction, {**data, "source": charge})
    assert expanded.source is not None
    assert (expanded.source.id, expanded.source.payment_intent) == (charge["id"], "pi_1")
    assert expanded.source.transfer == "tr_1"


def test_a_source_field_that_is_no_reference_is_none() -> None:
    # A payout's or a top-up's fields of the same names are not references to a payment.
    source = {"id": "po_1", "object": "payout", "application_fee": 12, "fee": None}
    transaction = {**stripe_object("balance_transaction"), "type": "payout", "source": source}
    parsed = parse_object(BalanceTransaction, transaction)
    assert parsed.source is not None
    assert (parsed.source.application_fee, parsed.source.fee) == (None, None)


def test_an_application_fee_reads_its_originating_payment() -> None:
    data = stripe_object("application_fee")
    charge = {**stripe_object("charge"), "payment_intent": "pi_1"}
    fee = parse_object(ApplicationFee, {**data, "originating_transaction": charge})
    assert fee.originating_transaction is not None
    assert fee.originating_transaction.payment_intent == "pi_1"
    unexpanded = parse_object(ApplicationFee, {**data, "originating_transaction": charge["id"]})
    assert unexpanded.originating_transaction is None
