"""Every flow clicked end to end in sandbox mode: the public API, the hosted pages, the
sandbox's Stripe API (reached by the real gateway) and its signed webhooks (taken by the
real webhook routes and handlers), all in one process."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sqlalchemy import select

from payments_api.escrow.models import Escrow
from payments_api.ledger.kinds import AccountKind
from payments_api.orders.models import Order
from payments_api.payouts.models import Payout, Withdrawal
from payments_api.webhook_handlers import STRIPE_HANDLERS
from payments_api.webhooks.models import WebhookEvent
from payments_sandbox import events as sandbox_events
from payments_sandbox.events import housekeeping
from payments_sandbox.models import SandboxEvent, SandboxObject
from tests.sandbox.helpers import SUCCESS_URL, Sandbox, path_of

CUSTOMER = ["customer"]
PAYEE = ["payee"]
BOTH = ["customer", "payee"]


def uid(tag: str) -> str:
    return f"{tag}_{uuid.uuid4().hex[:10]}"


async def order_of(sandbox: Sandbox, public_id: str) -> Order:
    async with sandbox.sessionmaker() as session:
        order = await session.get(Order, int(public_id.split("_")[1]), populate_existing=True)
        assert order is not None
        return order


async def inbox(sandbox: Sandbox, event_type: str) -> list[WebhookEvent]:
    async with sandbox.sessionmaker() as session:
        rows = await session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.type == event_type)
            .execution_options(populate_existing=True)
        )
        return list(rows)


class TestCheckoutTopUp:
    async def test_pay_credits_the_wallet_once_with_stripes_fee(self, sandbox: Sandbox) -> None:
        user = uid("alice")
        checkout = await sandbox.start_checkout(user, 20_000)
        assert checkout["id"].startswith("cs_test_")
        assert checkout["url"] == f"http://testserver/sandbox/checkout/{checkout['id']}"
        page = await sandbox.client.get(path_of(checkout["url"]))
        assert page.status_code == 200
        assert "SANDBOX" in page.text
        assert "200.00 USD" in page.text
        assert await sandbox.balance(user) == 0  # nothing before Stripe says so

        paid = await sandbox.click(path_of(checkout["url"]), action="pay")

        assert paid.status_code == 303
        assert paid.headers["location"] == SUCCESS_URL.replace(
            "{CHECKOUT_SESSION_ID}", checkout["id"]
        )
        assert await sandbox.balance(user) == 0  # the redirect is not a signal either
        delivered = await sandbox.deliver()
        assert delivered == [
            "customer.created",
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded",
            "checkout.session.completed",
        ]
        assert await sandbox.undelivered() == []
        assert await sandbox.balance(user) == 20_000
        order = await order_of(sandbox, checkout["order_id"])
        assert order.status == "succeeded"
        assert order.processing_fee_amount == 20_000 * 290 // 10_000 + 30  # 2.9% + 0.30
        # The handler read the fee from the sandbox charge's balance transaction.
        fee_reads = sandbox.stripe_calls("/sandbox/stripe/v1/charges/")
        assert len(fee_reads) == 1
        assert "expand[0]=balance_transaction" in str(fee_reads[0].url)

    async def test_redelivered_events_credit_nothing_more(self, sandbox: Sandbox) -> None:
        user = uid("alice")
        await sandbox.top_up(user, 5_000)
        async with sandbox.sessionmaker() as session:
            every = list(await session.scalars(select(SandboxEvent.id)))
        for event_id in every:  # Stripe may deliver any event again
            assert await sandbox_events.resend(sandbox.sessionmaker, event_id)
        assert len(await sandbox.deliver()) == len(every)
        assert await sandbox.balance(user) == 5_000

    async def test_three_d_secure_then_authenticated_credits(self, sandbox: Sandbox) -> None:
        user = uid("alice")
        checkout = await sandbox.start_checkout(user, 3_000)
        page = path_of(checkout["url"])

        challenge = await sandbox.click(page, action="3ds")
        assert challenge.status_code == 303
        assert challenge.headers["location"] == f"{page}/authenticate"
        assert "SANDBOX" in (await sandbox.client.get(f"{page}/authenticate")).text
        assert await sandbox.deliver() == [
            "customer.created",
            "payment_intent.created",
            "payment_intent.requires_action",
        ]
        assert await sandbox.balance(user) == 0

        done = await sandbox.click(f"{page}/authenticate", action="pass")
        assert done.status_code == 303
        await sandbox.deliver()
        assert await sandbox.balance(user) == 3_000
        charge = (await sandbox.objects_of("charge"))[-1]
        assert charge["payment_method_details"]["card"]["three_d_secure"]["result"] == (
            "authenticated"
        )

    async def test_failed_authentication_fails_the_order(self, sandbox: Sandbox) -> None:
        user = uid("alice")
        checkout = await sandbox.start_checkout(user, 3_000)
        page = path_of(checkout["url"])
        await sandbox.click(page, action="3ds")
        await sandbox.click(f"{page}/authenticate", action="fail")
        await sandbox.deliver()
        order = await order_of(sandbox, checkout["order_id"])
        assert order.status == "failed"
        assert order.failure_code == "authentication_failed"  # stable code
        assert await sandbox.balance(user) == 0

    async def test_decline_fails_the_order_and_a_retry_can_still_pay(
        self, sandbox: Sandbox
    ) -> None:
        user = uid("alice")
        checkout = await sandbox.start_checkout(user, 4_000)
        page = path_of(checkout["url"])

        declined = await sandbox.click(page, action="decline")

        assert declined.status_code == 303
        assert declined.headers["location"] == f"{page}?declined=generic_decline"
        assert "declined" in (await sandbox.client.get(declined.headers["location"])).text
        assert await sandbox.deliver() == [
            "customer.created",
            "payment_intent.created",
            "charge.failed",
            "payment_intent.payment_failed",
        ]
        order = await order_of(sandbox, checkout["order_id"])
        assert (order.status, order.failure_code) == ("failed", "card_declined")
        assert await sandbox.balance(user) == 0

        # Stripe Checkout keeps the session open after a decline: paying now succeeds.
        await sandbox.click(page, action="pay")
        await sandbox.deliver()
        assert (await order_of(sandbox, checkout["order_id"])).status == "succeeded"
        assert await sandbox.balance(user) == 4_000

    async def test_expire_button_expires_the_order(self, sandbox: Sandbox) -> None:
        user = uid("alice")
        checkout = await sandbox.start_checkout(user, 4_000)

        expired = await sandbox.click(path_of(checkout["url"]), action="expire")

        assert expired.status_code == 303
        assert await sandbox.deliver() == ["customer.created", "checkout.session.expired"]
        assert (await order_of(sandbox, checkout["order_id"])).status == "expired"
        refused = await sandbox.click(path_of(checkout["url"]), action="pay")
        assert refused.status_code == 409
        assert "expired" in refused.text

    async def test_sessions_past_expires_at_expire_by_themselves(self, sandbox: Sandbox) -> None:
        user = uid("alice")
        checkout = await sandbox.start_checkout(user, 4_000)
        async with sandbox.sessionmaker.begin() as session:
            row = await session.get(SandboxObject, checkout["id"])
            assert row is not None
            row.body = {**row.body, "expires_at": 1_000_000}

        await housekeeping(sandbox.sessionmaker, sandbox.settings)

        assert "checkout.session.expired" in await sandbox.deliver()
        assert (await order_of(sandbox, checkout["order_id"])).status == "expired"


class TestPaymentIntentTopUp:
    async def test_confirmed_on_the_sandbox_page_credits(self, sandbox: Sandbox) -> None:
        user = uid("mobile")
        created = await sandbox.api(
            "POST", "/api/v1/topups", user, CUSTOMER, json={"amount": 2_500, "currency": "usd"}
        )
        assert created.status_code == 201, created.text
        intent = created.json()
        assert intent["payment_intent_id"].startswith("pi_")
        assert intent["client_secret"].startswith(f"{intent['payment_intent_id']}_secret_")
        page = f"/sandbox/payment_intents/{intent['payment_intent_id']}"
        assert "SANDBOX" in (await sandbox.client.get(page)).text

        paid = await sandbox.click(page, action="pay")

        assert paid.status_code == 303
        assert await sandbox.deliver() == [
            "customer.created",
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded",
        ]
        assert await sandbox.balance(user) == 2_500
        order = await order_of(sandbox, intent["order_id"])
        assert order.status == "succeeded"
        assert order.processing_fee_amount == 2_500 * 290 // 10_000 + 30

    async def test_confirmed_through_the_api_with_a_test_card(self, sandbox: Sandbox) -> None:
        user = uid("mobile")
        created = await sandbox.api(
            "POST", "/api/v1/topups", user, CUSTOMER, json={"amount": 2_500, "currency": "usd"}
        )
        intent_id = created.json()["payment_intent_id"]

        confirmed = await sandbox.stripe(
            "POST", f"/v1/payment_intents/{intent_id}/confirm", {"payment_method": "pm_card_visa"}
        )

        assert confirmed.status_code == 200
        assert confirmed.json()["status"] == "succeeded"
        await sandbox.deliver()
        assert await sandbox.balance(user) == 2_500


class TestConnectOnboarding:
    async def test_onboarding_enables_the_payout_account_by_webhook(self, sandbox: Sandbox) -> None:
        payee = uid("payee")
        link = await sandbox.api("POST", "/api/v1/me/payout-account/onboarding-link", payee, PAYEE)
        assert link.status_code == 200, link.text
        body = link.json()
        assert body["payout_account"]["status"] == "pending"
        account = body["payout_account"]["stripe_account_id"]
        assert account.startswith("acct_")
        assert body["url"].startswith(f"http://testserver/sandbox/onboarding/{account}?link=")
        form = await sandbox.client.get(path_of(body["url"]))
        assert form.status_code == 200
        assert "SANDBOX" in form.text

        token = urlsplit(body["url"]).query.split("link=", 1)[1]
        done = await sandbox.click(f"/sandbox/onboarding/{account}", link=token, outcome="enabled")

        # Back to the service's return landing, which is not a completion signal.
        assert done.status_code == 303
        assert done.headers["location"].startswith(
            "http://testserver/api/v1/payout-account/onboarding/return?state="
        )
        still = await sandbox.api("GET", "/api/v1/me/payout-account", payee, PAYEE)
        assert still.json()["payout_account"]["status"] == "pending"
        assert await sandbox.deliver() == ["account.updated"]
        connect_call = sandbox.webhook_calls()[-1]
        assert connect_call["account"] == account
        assert sandbox.mock.calls[-1].request.url.path == "/api/v1/webhooks/stripe/connect"
        now = await sandbox.api("GET", "/api/v1/me/payout-account", payee, PAYEE)
        status = now.json()["payout_account"]
        assert (status["status"], status["setup_complete"], status["payouts_enabled"]) == (
            "enabled",
            True,
            True,
        )
        dashboard = await sandbox.api(
            "POST", "/api/v1/me/payout-account/dashboard-link", payee, PAYEE
        )
        assert dashboard.status_code == 200, dashboard.text
        assert dashboard.json()["url"].startswith(f"http://testserver/sandbox/dashboard/{account}")
        seen = await sandbox.client.get(path_of(dashboard.json()["url"]))
        assert seen.status_code == 200
        assert "SANDBOX" in seen.text

    async def test_failed_verification_restricts_the_account(self, sandbox: Sandbox) -> None:
        payee = uid("payee")
        await sandbox.onboard(payee, "restricted")
        status = (await sandbox.api("GET", "/api/v1/me/payout-account", payee, PAYEE)).json()
        assert status["payout_account"]["status"] == "restricted"
        assert status["payout_account"]["status_reason"] == "requirements.past_due"
        assert status["payout_account"]["requirements_past_due"] == [
            "individual.verification.document"
        ]

    async def test_a_used_link_sends_the_browser_to_refresh_for_a_new_one(
        self, sandbox: Sandbox
    ) -> None:
        payee = uid("payee")
        link = await sandbox.api("POST", "/api/v1/me/payout-account/onboarding-link", payee, PAYEE)
        url = link.json()["url"]
        account = urlsplit(url).path.rsplit("/", 1)[1]
        token = urlsplit(url).query.split("link=", 1)[1]
        await sandbox.click(f"/sandbox/onboarding/{account}", link=token, outcome="later")

        again = await sandbox.client.get(path_of(url))

        assert again.status_code == 302
        refresh = again.headers["location"]
        assert refresh.startswith("http://testserver/api/v1/payout-account/onboarding/refresh")
        fresh = await sandbox.client.get(path_of(refresh))
        assert fresh.status_code == 302
        assert fresh.headers["location"].startswith(
            f"http://testserver/sandbox/onboarding/{account}"
        )
        assert fresh.headers["location"] != url
        assert (await sandbox.client.get(path_of(fresh.headers["location"]))).status_code == 200


async def funded_payee(sandbox: Sandbox, amount: int = 20_000) -> tuple[str, str]:
    """A payee with an enabled payout account and ``amount`` available (a top-up)."""
    payee = uid("payee")
    account = await sandbox.onboard(payee)
    await sandbox.top_up(payee, amount, BOTH)
    assert await sandbox.balance(payee) == amount
    return payee, account


async def withdrawal_row(sandbox: Sandbox, public_id: str) -> Withdrawal:
    async with sandbox.sessionmaker() as session:
        row = await session.get(Withdrawal, int(public_id.split("_")[1]), populate_existing=True)
        assert row is not None
        return row


async def payout_rows(sandbox: Sandbox, account: str) -> list[Payout]:
    async with sandbox.sessionmaker() as session:
        rows = await session.scalars(
            select(Payout)
            .where(Payout.stripe_account_id == account)
            .execution_options(populate_existing=True)
        )
        return list(rows)


class TestWithdrawal:
    async def test_withdrawal_transfers_and_the_payout_can_be_paid(self, sandbox: Sandbox) -> None:
        payee, account = await funded_payee(sandbox)

        made = await sandbox.api(
            "POST", "/api/v1/me/payouts", payee, PAYEE, json={"amount": 5_000, "currency": "usd"}
        )

        assert made.status_code == 201, made.text
        assert made.json()["status"] == "transferred"
        transfer = (await sandbox.objects_of("transfer"))[-1]
        assert (transfer["destination"], transfer["amount"]) == (account, 5_000)
        request = sandbox.stripe_calls("/sandbox/stripe/v1/transfers")[-1]
        assert ":withdrawal:" in request.headers["Idempotency-Key"]
        assert await sandbox.balance(payee) == 15_000
        assert await sandbox.balance(payee, AccountKind.withdrawing) == 0
        assert await sandbox.deliver() == ["transfer.created", "payout.created"]

        listed = await sandbox.api("GET", "/api/v1/me/payouts", payee, PAYEE)
        assert listed.status_code == 200, listed.text
        payouts = listed.json()["data"]
        assert [(p["amount"], p["status"]) for p in payouts] == [(5_000, "pending")]
        list_call = sandbox.stripe_calls("/sandbox/stripe/v1/payouts")[-1]
        assert list_call.headers["Stripe-Account"] == account

        admin = await sandbox.client.get("/sandbox/")
        assert payouts[0]["id"] in admin.text
        paid = await sandbox.click(f"/sandbox/admin/payouts/{payouts[0]['id']}", outcome="paid")
        assert paid.status_code == 303
        assert await sandbox.deliver() == ["payout.updated", "payout.paid"]
        assert [p.status for p in await payout_rows(sandbox, account)] == ["paid"]

    async def test_a_failed_payout_is_recorded(self, sandbox: Sandbox) -> None:
        payee, account = await funded_payee(sandbox)
        await sandbox.api(
            "POST", "/api/v1/me/payouts", payee, PAYEE, json={"amount": 5_000, "currency": "usd"}
        )
        await sandbox.deliver()
        payout = (await sandbox.objects_of("payout"))[-1]

        await sandbox.click(f"/sandbox/admin/payouts/{payout['id']}", outcome="failed")

        assert await sandbox.deliver() == ["payout.updated", "payout.failed"]
        rows = await payout_rows(sandbox, account)
        assert [(p.status, p.failure_code) for p in rows] == [("failed", "account_closed")]
        balance = await sandbox.stripe("GET", "/v1/balance", account=account)
        assert balance.json()["available"][0]["amount"] == 5_000  # back on the account

    async def test_a_reversed_transfer_returns_the_money(self, sandbox: Sandbox) -> None:
        payee, _ = await funded_payee(sandbox)
        made = await sandbox.api(
            "POST", "/api/v1/me/payouts", payee, PAYEE, json={"amount": 5_000, "currency": "usd"}
        )
        await sandbox.deliver()
        transfer = (await sandbox.objects_of("transfer"))[-1]

        reversed_ = await sandbox.click(f"/sandbox/admin/transfers/{transfer['id']}/reverse")

        assert reversed_.status_code == 303
        assert await sandbox.deliver() == ["transfer.reversed"]
        assert (await withdrawal_row(sandbox, made.json()["id"])).status == "reversed"
        assert await sandbox.balance(payee) == 20_000

    async def test_the_sandbox_refuses_a_transfer_to_an_account_without_payouts(
        self, sandbox: Sandbox
    ) -> None:
        payee, account = await funded_payee(sandbox)
        # Stripe restricts the account, and the service has not heard about it yet.
        await sandbox.onboard(payee, "restricted", deliver=False)

        made = await sandbox.api(
            "POST", "/api/v1/me/payouts", payee, PAYEE, json={"amount": 5_000, "currency": "usd"}
        )

        assert made.status_code == 201, made.text
        assert (made.json()["status"], made.json()["failure_code"]) == (
            "failed",
            "transfer_refused",
        )
        assert await sandbox.balance(payee) == 20_000  # all of it back
        assert await sandbox.balance(payee, AccountKind.withdrawing) == 0
        assert [
            t for t in await sandbox.objects_of("transfer") if t["destination"] == account
        ] == []
        await sandbox.deliver()
        status = (await sandbox.api("GET", "/api/v1/me/payout-account", payee, PAYEE)).json()
        assert status["payout_account"]["status"] == "restricted"


class TestEscrow:
    async def test_offer_accept_complete_in_sandbox(self, sandbox: Sandbox) -> None:
        customer, payee = uid("cust"), uid("payee")
        await sandbox.top_up(customer, 20_000)
        await sandbox.onboard(payee)
        stripe_calls = len(sandbox.stripe_calls())

        offered = await sandbox.api(
            "POST",
            "/api/v1/escrows",
            customer,
            CUSTOMER,
            json={"payee_id": payee, "amount": 10_000, "currency": "usd", "reference": "job-1"},
        )
        assert offered.status_code == 201, offered.text
        escrow = offered.json()["id"]
        assert await sandbox.balance(customer) == 9_500
        assert await sandbox.balance(customer, AccountKind.escrow) == 10_500
        accepted = await sandbox.api("POST", f"/api/v1/escrows/{escrow}/accept", payee, PAYEE)
        assert accepted.status_code == 200, accepted.text
        completed = await sandbox.api(
            "POST", f"/api/v1/escrows/{escrow}/complete", customer, CUSTOMER
        )
        assert completed.status_code == 200, completed.text

        assert await sandbox.balance(payee) == 8_000
        assert await sandbox.balance(customer, AccountKind.escrow) == 0
        assert len(sandbox.stripe_calls()) == stripe_calls  # escrow never calls Stripe
        async with sandbox.sessionmaker() as session:
            row = await session.scalar(select(Escrow).where(Escrow.payee_id == payee))
            assert row is not None
            assert row.status == "completed"
        withdrawn = await sandbox.api(
            "POST", "/api/v1/me/payouts", payee, PAYEE, json={"amount": 5_000, "currency": "usd"}
        )
        assert withdrawn.json()["status"] == "transferred"
        assert await sandbox.balance(payee) == 3_000


class TestDisputesAndRefunds:
    async def test_a_dispute_opened_on_the_admin_page_reaches_the_handler(
        self, sandbox: Sandbox
    ) -> None:
        user = uid("alice")
        await sandbox.top_up(user, 20_000)
        charge = (await sandbox.objects_of("charge"))[-1]
        assert charge["id"] in (await sandbox.client.get("/sandbox/admin")).text

        opened = await sandbox.click(
            f"/sandbox/admin/charges/{charge['id']}/dispute", amount="", reason="fraudulent"
        )

        assert opened.status_code == 303
        assert await sandbox.deliver() == [
            "charge.dispute.created",
            "charge.dispute.funds_withdrawn",
        ]
        expected = (
            "processed"
            if STRIPE_HANDLERS.handler_for("platform", "charge.dispute.created")
            else "ignored"
        )
        assert [e.status for e in await inbox(sandbox, "charge.dispute.created")] == [expected]
        dispute = (await sandbox.objects_of("dispute"))[-1]
        assert (dispute["amount"], dispute["status"]) == (20_000, "needs_response")
        assert dispute["balance_transactions"][0]["fee"] == 1_500
        if expected == "processed":
            # The disputed 200.00 and Stripe's 15.00 fee left the wallet (it may go below 0).
            assert await sandbox.balance(user) == -1_500

        won = await sandbox.click(f"/sandbox/admin/disputes/{dispute['id']}/close", outcome="won")
        assert won.status_code == 303
        assert await sandbox.deliver() == [
            "charge.dispute.funds_reinstated",
            "charge.dispute.closed",
        ]
        assert [e.status for e in await inbox(sandbox, "charge.dispute.closed")] == [expected]
        if expected == "processed":
            assert await sandbox.balance(user) == 20_000

    async def test_an_admin_refund_is_made_in_the_sandbox(self, sandbox: Sandbox) -> None:
        user = uid("alice")
        checkout = await sandbox.top_up(user, 20_000)

        refund = await sandbox.api(
            "POST",
            "/api/v1/admin/refunds",
            uid("admin"),
            ["admin"],
            json={"order_id": checkout["order_id"], "amount": 5_000},
        )

        assert refund.status_code == 201, refund.text
        made = (await sandbox.objects_of("refund"))[-1]
        assert (made["amount"], made["status"]) == (5_000, "succeeded")
        charge = await sandbox.stripe_object(made["charge"])
        assert (charge["amount_refunded"], charge["refunded"]) == (5_000, False)
        assert "charge.refunded" in await sandbox.deliver()
        assert await sandbox.balance(user) == 15_000
        assert await sandbox.undelivered() == []
