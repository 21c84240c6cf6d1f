"""The typed Stripe Billing objects read Stripe's own shapes (tests/fixtures/stripe) and
say clearly what is missing when a payload does not fit."""

from __future__ import annotations

import pytest

from payments_api.stripe.billing_objects import (
    ClientSecret,
    Invoice,
    InvoicePayment,
    InvoicePreview,
    Price,
    Product,
    Subscription,
)
from payments_api.stripe.objects import MalformedStripeObject, parse_object
from tests.helpers import stripe_object


def test_a_subscription_reads_stripes_example() -> None:
    data = stripe_object("subscription")
    subscription = parse_object(Subscription, data)
    item = data["items"]["data"][0]
    assert (subscription.id, subscription.status) == (data["id"], data["status"])
    assert subscription.customer == data["customer"]
    assert subscription.metadata == {}
    assert subscription.cancel_at_period_end is False
    assert subscription.pause_collection is None
    assert subscription.latest_invoice_id == data["latest_invoice"]
    first = subscription.first_item
    assert first is not None
    assert first.id == item["id"]
    assert first.price is not None
    assert (first.price.id, first.price.product) == (item["price"]["id"], "prod_fixture0001")
    assert (first.current_period_start, first.current_period_end) == (
        item["current_period_start"],
        item["current_period_end"],
    )


def test_a_subscription_with_its_first_invoice_and_setup_intent_expanded() -> None:
    first = {
        **stripe_object("invoice"),
        "status": "open",
        "confirmation_secret": {"client_secret": "pi_1_secret_x", "type": "payment_intent"},
    }
    setup = {"id": "seti_1", "object": "setup_intent", "client_secret": "seti_1_secret_y"}
    data = {
        **stripe_object("subscription"),
        "status": "incomplete",
        "latest_invoice": first,
        "pending_setup_intent": setup,
    }
    subscription = parse_object(Subscription, data)
    assert isinstance(subscription.latest_invoice, Invoice)
    assert subscription.latest_invoice_id == first["id"]
    assert subscription.latest_invoice.status == "open"
    assert subscription.latest_invoice.confirmation_secret is not None
    assert subscription.latest_invoice.confirmation_secret.client_secret == "pi_1_secret_x"
    assert subscription.pending_setup_intent == ClientSecret(client_secret="seti_1_secret_y")


def test_a_subscription_without_items_and_with_a_paused_collection() -> None:
    data = {
        **stripe_object("subscription"),
        "items": {"object": "list", "data": [], "has_more": False},
        "pause_collection": {"behavior": "void", "resumes_at": 1767484800},
        "metadata": None,
    }
    subscription = parse_object(Subscription, data)
    assert subscription.first_item is None
    assert subscription.pause_collection is not None
    assert subscription.pause_collection.behavior == "void"
    assert subscription.pause_collection.resumes_at == 1767484800
    assert subscription.metadata == {}


def test_an_invoice_reads_stripes_example() -> None:
    data = stripe_object("invoice")
    invoice = parse_object(Invoice, data)
    assert (invoice.id, invoice.status, invoice.currency) == (
        data["id"],
        data["status"],
        data["currency"],
    )
    assert (invoice.amount_due, invoice.amount_paid, invoice.total) == (1900, 1900, 1900)
    assert invoice.attempt_count == data["attempt_count"]
    assert invoice.stripe_subscription_id == "sub_fixture0001"
    assert invoice.subscription_details.metadata == {}
    assert invoice.status_transitions is not None
    assert invoice.status_transitions.paid_at == data["status_transitions"]["paid_at"]
    assert invoice.total_taxes is None


def test_an_invoice_of_an_older_api_version_names_its_subscription_itself() -> None:
    data = {**stripe_object("invoice"), "parent": None, "subscription": "sub_old"}
    invoice = parse_object(Invoice, data)
    assert invoice.stripe_subscription_id == "sub_old"
    assert invoice.subscription_details.metadata == {}
    alone = parse_object(Invoice, {**data, "subscription": None})
    assert alone.stripe_subscription_id is None


def test_an_invoice_reads_its_taxes() -> None:
    data = {
        **stripe_object("invoice"),
        "total_taxes": [{"amount": 80, "tax_behavior": "exclusive", "taxable_amount": 1000}],
    }
    invoice = parse_object(Invoice, data)
    assert invoice.total_taxes is not None
    assert [tax.amount for tax in invoice.total_taxes] == [80]


def test_a_preview_reads_its_lines_without_an_id() -> None:
    data = stripe_object("invoice")
    line = data["lines"]["data"][0]
    prorated = {
        **line,
        "amount": -950,
        "parent": {
            **line["parent"],
            "subscription_item_details": {
                **line["parent"]["subscription_item_details"],
                "proration": True,
            },
        },
    }
    data.update(id=None, status="draft", lines={**data["lines"], "data": [prorated, line]})
    preview = InvoicePreview.model_validate(data)
    assert (preview.amount_due, preview.currency) == (data["amount_due"], "usd")
    assert [(x.amount, x.proration) for x in preview.lines.data] == [(-950, True), (1900, False)]
    assert preview.lines.data[1].description == line["description"]


def test_an_invoice_payment_names_the_charge_that_paid() -> None:
    data = stripe_object("invoice_payment")
    unexpanded = parse_object(InvoicePayment, data)
    assert (unexpanded.id, unexpanded.status) == (data["id"], "paid")
    assert unexpanded.charge is None  # only the PaymentIntent's id: no charge to name
    intent = {"id": "pi_1", "object": "payment_intent", "latest_charge": {"id": "ch_1"}}
    expanded = {**data, "payment": {"type": "payment_intent", "payment_intent": intent}}
    assert parse_object(InvoicePayment, expanded).charge == "ch_1"
    by_charge = {**data, "payment": {"type": "charge", "charge": "ch_2"}}
    assert parse_object(InvoicePayment, by_charge).charge == "ch_2"
    assert parse_object(InvoicePayment, {**data, "payment": None}).charge is None


def test_a_product_reads_stripes_example() -> None:
    data = stripe_object("product")
    product = parse_object(Product, data)
    assert (product.id, product.name, product.active) == (data["id"], data["name"], True)
    assert product.metadata == {"family": "studio"}
    assert [f.name for f in product.marketing_features] == [
        "Unlimited projects",
        "Priority support",
    ]
    assert product.updated == data["updated"]
    assert product.deleted is False


def test_a_price_reads_stripes_example_and_an_expanded_product() -> None:
    data = stripe_object("price")
    price = parse_object(Price, data)
    assert (price.id, price.currency, price.unit_amount) == (data["id"], "usd", 1900)
    assert price.recurring is not None
    assert (price.recurring.interval, price.recurring.interval_count) == ("month", 1)
    assert price.product == data["product"]
    assert price.metadata == {"monthly_credit": "500"}
    expanded = parse_object(Price, {**data, "product": stripe_object("product")})
    assert expanded.product == data["product"]


def test_a_one_time_price_has_no_recurrence() -> None:
    price = parse_object(Price, {**stripe_object("price"), "recurring": None, "type": "one_time"})
    assert price.recurring is None


@pytest.mark.parametrize(
    ("model", "fixture", "field", "value"),
    [
        (Subscription, "subscription", "cancel_at_period_end", "soon"),
        (Subscription, "subscription", "status", None),
        (Invoice, "invoice", "amount_paid", "1900 cents"),
        (Invoice, "invoice", "currency", None),
        (Price, "price", "unit_amount", "19.00 dollars"),
        (Product, "product", "marketing_features", "fast"),
    ],
)
def test_a_field_of_the_wrong_type_names_the_field_not_the_value(
    model: type[Subscription | Invoice | Price | Product],
    fixture: str,
    field: str,
    value: object,
) -> None:
    data = {**stripe_object(fixture), field: value}
    with pytest.raises(MalformedStripeObject) as raised:
        parse_object(model, data)
    assert str(raised.value) == f"{model.__name__} without the expected {field}"
    if isinstance(value, str):
        assert value not in str(raised.value)


def test_a_subscription_item_without_its_id_is_malformed() -> None:
    data = stripe_object("subscription")
    del data["items"]["data"][0]["id"]
    with pytest.raises(MalformedStripeObject, match=r"items\.data\.0\.id"):
        parse_object(Subscription, data)
