"""Subscriptions against the sandbox's Stripe Billing: plans by events, subscribe, and a
year of monthly renewals by advancing the customer's test clock."""

from __future__ import annotations

from sqlalchemy import text

from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.service import AccountRef, LedgerService
from payments_sandbox.objects import card_fee
from tests.factories import ledger_invariants
from tests.sandbox.helpers import Sandbox


async def platform(sandbox: Sandbox, kind: AccountKind) -> int:
    async with sandbox.sessionmaker() as session:
        return await LedgerService(session).balance_of(AccountRef.platform(kind, "usd"))


async def transactions_of(sandbox: Sandbox, transaction_type: str) -> int:
    async with sandbox.sessionmaker() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM ledger_transactions WHERE type = :type"),
            {"type": transaction_type},
        )
    return int(count or 0)


async def make_plan(sandbox: Sandbox, *, credit: int | None = 250) -> str:
    product = await sandbox.stripe(
        "POST",
        "/v1/products",
        {"name": "Studio", "metadata[family]": "studio", "marketing_features[0][name]": "All"},
    )
    assert product.status_code == 200, product.text
    data = {
        "product": product.json()["id"],
        "currency": "usd",
        "unit_amount": "1200",
        "recurring[interval]": "month",
    }
    if credit is not None:
        data["metadata[monthly_credit]"] = str(credit)
    price = await sandbox.stripe("POST", "/v1/prices", data)
    assert price.status_code == 200, price.text
    price_id: str = price.json()["id"]
    return price_id


async def test_a_year_of_renewals_on_a_test_clock(sandbox: Sandbox) -> None:
    # Platform accounts are shared with whatever other tests committed to this database:
    # the year is what they moved during this test.
    kinds = (AccountKind.sales, AccountKind.processing_fees, AccountKind.stripe_balance)
    before = {kind: await platform(sandbox, kind) for kind in kinds}
    payments_before = await transactions_of(sandbox, "subscription_payment")
    credits_before = await transactions_of(sandbox, "subscription_credit")
    price = await make_plan(sandbox)
    assert await sandbox.deliver() == ["product.created", "price.created"]
    plans = await sandbox.api("GET", "/api/v1/plans", "sam", ["customer"])
    assert [(p["price"], p["monthly_credit"]) for p in plans.json()["data"]] == [(price, 250)]

    created = await sandbox.api(
        "POST", "/api/v1/me/subscriptions", "sam", ["customer"], json={"price": price}
    )
    assert created.status_code == 201, created.text
    assert (created.json()["status"], created.json()["client_secret"]) == ("active", None)
    delivered = await sandbox.deliver()
    assert delivered[:2] == ["customer.created", "customer.subscription.created"]
    assert "invoice.paid" in delivered
    subscription = await sandbox.stripe_object(created.json()["stripe_subscription_id"])
    clock = subscription["test_clock"]
    start = int(subscription["items"]["data"][0]["current_period_start"])

    for month in range(1, 13):
        answer = await sandbox.click(
            f"/sandbox/test-clocks/{clock}/advance", frozen_time=str(start + month * 30 * 86400)
        )
        assert answer.status_code == 303, answer.text
        assert (await sandbox.deliver()).count("invoice.paid") == 1
    mine = await sandbox.api("GET", "/api/v1/me/subscriptions", "sam", ["customer"])
    assert mine.json()["data"][0]["status"] == "active"
    assert await sandbox.balance("sam") == 13 * 250
    assert await transactions_of(sandbox, "subscription_payment") - payments_before == 13
    # 1 first invoice + 12 renewals, each paid by its own charge, 12 + 1 credits: exact
    invoices = [
        i for i in await sandbox.objects_of("invoice") if i["customer"] == subscription["customer"]
    ]
    assert (
        sorted(i["billing_reason"] for i in invoices)
        == ["subscription_create"] + ["subscription_cycle"] * 12
    )
    assert all(i["status"] == "paid" for i in invoices)
    fee = card_fee(1200, "usd")
    moved = {kind: await platform(sandbox, kind) - before[kind] for kind in kinds}
    assert moved == {
        AccountKind.sales: 13 * 1200 - 13 * 250,
        AccountKind.processing_fees: -13 * fee,
        AccountKind.stripe_balance: -13 * (1200 - fee),
    }
    async with sandbox.sessionmaker() as session:
        assert await ledger_invariants(session) == []
    assert await transactions_of(sandbox, "subscription_credit") - credits_before == 13


async def test_refund_an_invoice_and_pause_collection(sandbox: Sandbox) -> None:
    # Other tests commit to the shared platform accounts too: what this test moved.
    sales_before = await platform(sandbox, AccountKind.sales)
    price = await make_plan(sandbox)
    await sandbox.deliver()
    created = await sandbox.api(
        "POST", "/api/v1/me/subscriptions", "pat", ["customer"], json={"price": price}
    )
    sid = created.json()["id"]
    await sandbox.deliver()
    assert await sandbox.balance("pat") == 250
    [first] = await sandbox.objects_of("invoice")

    # an admin refunds half of the first invoice: half the credit comes back out
    refund = await sandbox.api(
        "POST",
        "/api/v1/admin/refunds",
        "admin_a",
        ["admin"],
        json={"invoice_id": first["id"], "amount": 600},
    )
    assert refund.status_code == 201, refund.text
    assert (refund.json()["status"], refund.json()["credit_taken_back"]) == ("succeeded", 125)
    delivered = await sandbox.deliver()
    assert "charge.refunded" in delivered
    assert await sandbox.balance("pat") == 125
    assert await platform(sandbox, AccountKind.sales) - sales_before == 1200 - 250 - 600 + 125

    # pause collection: a month passes with no invoice, then collection resumes
    paused = await sandbox.api(
        "POST", f"/api/v1/me/subscriptions/{sid}/pause", "pat", ["customer"], json={}
    )
    assert paused.status_code == 200, paused.text
    assert (paused.json()["entitled"], paused.json()["pause_collection"]["behavior"]) == (
        False,
        "void",
    )
    subscription = await sandbox.stripe_object(created.json()["stripe_subscription_id"])
    clock, start = (
        subscription["test_clock"],
        int(subscription["items"]["data"][0]["current_period_start"]),
    )
    await sandbox.click(
        f"/sandbox/test-clocks/{clock}/advance", frozen_time=str(start + 31 * 86400)
    )
    assert "invoice.paid" not in await sandbox.deliver()
    unpaused = await sandbox.api(
        "POST", f"/api/v1/me/subscriptions/{sid}/unpause", "pat", ["customer"]
    )
    assert (unpaused.json()["entitled"], unpaused.json()["pause_collection"]) == (True, None)
    await sandbox.click(
        f"/sandbox/test-clocks/{clock}/advance", frozen_time=str(start + 61 * 86400)
    )
    assert (await sandbox.deliver()).count("invoice.paid") == 1
    assert await sandbox.balance("pat") == 125 + 250
    async with sandbox.sessionmaker() as session:
        assert await ledger_invariants(session) == []


async def test_a_declined_card_needs_the_customer_then_pays(sandbox: Sandbox) -> None:
    price = await make_plan(sandbox, credit=None)
    await sandbox.deliver()
    created = await sandbox.api(
        "POST",
        "/api/v1/me/subscriptions",
        "dee",
        ["customer"],
        json={"price": price, "payment_method": "pm_card_chargeDeclined"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["status"], body["client_secret_type"]) == ("incomplete", "payment_intent")
    assert "invoice.payment_failed" in await sandbox.deliver()
    intent = body["client_secret"].split("_secret_")[0]
    paid = await sandbox.click(f"/sandbox/payment_intents/{intent}", action="pay")
    assert paid.status_code in (200, 303), paid.text
    delivered = await sandbox.deliver()
    assert "invoice.paid" in delivered
    assert "customer.subscription.updated" in delivered
    mine = await sandbox.api("GET", "/api/v1/me/subscriptions", "dee", ["customer"])
    assert (mine.json()["data"][0]["status"], mine.json()["data"][0]["entitled"]) == (
        "active",
        True,
    )


async def test_created_bounds_beyond_32_bits_list_nothing(sandbox: Sandbox) -> None:
    """Found by schemathesis (a reconciliation of the year 1165): Stripe's `created`
    bounds are 64-bit."""
    listed = await sandbox.stripe(
        "GET",
        "/v1/balance_transactions",
        {"created[gte]": "-25387020000", "created[lt]": "-25386890400"},
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == []
