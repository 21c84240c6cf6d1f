"""Fault-injection matrix: every outgoing Stripe call x every failure x when it strikes.

Rows are Stripe calls (a public method of ``StripeGateway``, the Stripe endpoint it
hits, and the client-facing scenario that reaches it); columns are faults (timeout,
connection error, 500, 429, 400 with Stripe's error shape) and phases:

- ``first_try``: the first call fails; the retry succeeds.
- ``retry``: the first call takes effect at Stripe but its answer is lost (a timeout
  after the fact; for 400 a connection error before it, as Stripe never answers a
  request it executed with a 400 later), the retry hits the fault, the next retry
  succeeds.

For each cell: every failed try is a clear problem (503 + ``Retry-After`` for
transient faults, 502 ``payment_provider_error`` when Stripe refuses, or the route's
documented outcome, e.g. a withdrawal stays ``pending``), never Stripe's own words;
nothing half-done blocks the retry; the retries reach exactly one Stripe object (one
creation, one idempotency key); ledger invariants hold.

Adding a gateway method: add a row (a scenario exists for most routes), or name it in
``NOT_REACHABLE`` with the reason; ``test_every_gateway_call_has_a_row`` enforces it.
"""

from __future__ import annotations

import inspect
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.payouts.service import PayoutService
from payments_api.refunds.service import RefundService
from payments_api.state import AppState
from payments_api.stripe.gateway import StripeGateway
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.factories import fund, ledger_invariants
from tests.faults.escrow_capture import CancelAuthorizedEscrow, CaptureEscrow, ReadBackIntent
from tests.faults.fake_stripe import FakeStripe
from tests.faults.fault_injector import LEAK_MARKER, FaultKind
from tests.faults.harness import Harness, Scenario, assert_problem
from tests.helpers import auth, make_event, signed_webhook, stripe_object


class Topup(Scenario):
    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.post(
            "/api/v1/topups",
            json={"amount": 5_000, "currency": "eur"},
            headers=t.headers("customer"),
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 201, response.text
        assert response.json()["client_secret"].startswith(response.json()["payment_intent_id"])

    async def settled(self, t: Harness) -> None:
        orders = await t.scalar("SELECT count(*) FROM orders WHERE user_id = :u", u=t.user)
        assert orders == 1
        assert await t.scalar(
            "SELECT stripe_payment_intent_id FROM orders WHERE user_id = :u", u=t.user
        )
        assert await t.scalar("SELECT stripe_customer_id FROM users WHERE id = :u", u=t.user)


class Checkout(Scenario):
    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.post(
            "/api/v1/checkout/sessions",
            json={
                "purpose": "topup",
                "amount": 2_500,
                "currency": "usd",
                "success_url": "http://localhost:3000/wallet?paid=1",
                "cancel_url": "http://localhost:3000/wallet",
            },
            headers=t.headers("customer"),
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 201, response.text
        assert response.json()["url"].startswith("https://checkout.stripe.com/")

    async def settled(self, t: Harness) -> None:
        assert await t.scalar("SELECT count(*) FROM orders WHERE user_id = :u", u=t.user) == 1
        assert await t.scalar(
            "SELECT stripe_checkout_session_id FROM orders WHERE user_id = :u", u=t.user
        )


class Onboarding(Scenario):
    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.post(
            "/api/v1/me/payout-account/onboarding-link", headers=auth(t.user, ["payee"])
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 200, response.text
        assert response.json()["url"].startswith("https://connect.stripe.com/")

    async def settled(self, t: Harness) -> None:
        rows = await t.scalar(
            "SELECT count(*) FROM payout_accounts WHERE user_id = :u"
            " AND stripe_account_id IS NOT NULL",
            u=t.user,
        )
        assert rows == 1


async def onboard(t: Harness) -> str:
    """An onboarded payee (Stripe says: enabled); returns the connected account id."""
    t.fake.accounts_enabled = True
    response = await t.client.post(
        "/api/v1/me/payout-account/onboarding-link", headers=auth(t.user, ["payee"])
    )
    assert response.status_code == 200, response.text
    account: str = response.json()["payout_account"]["stripe_account_id"]
    t.fake.requests.clear()
    return account


class DashboardLink(Scenario):
    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        await onboard(t)

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.post(
            "/api/v1/me/payout-account/dashboard-link", headers=auth(t.user, ["payee"])
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 200, response.text
        assert response.json()["url"].startswith("https://connect.stripe.com/express/")


class AdminSync(Scenario):
    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        await onboard(t)

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.post(
            f"/api/v1/admin/payout-accounts/{t.user}/sync",
            headers=auth(f"admin_{t.user}", ["admin"]),
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 200, response.text
        assert response.json()["payout_account"]["status"] == "enabled"


class ListPayouts(Scenario):
    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        await onboard(t)

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.get("/api/v1/me/payouts", headers=auth(t.user, ["payee"]))
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 200, response.text
        assert response.json()["payout_account"]["status"] == "enabled"


class ProjectWallet(Scenario):
    """The project wallet shows the connected account's Stripe balance."""

    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        await onboard(t)
        response = await t.client.post(
            "/api/v1/me/projects",
            json={"name": "Stall", "currency": "usd"},
            headers=t.headers("payee"),
        )
        assert response.status_code == 201, response.text
        t.memo["project"] = response.json()["id"]

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.get(
            f"/api/v1/me/projects/{t.memo['project']}/wallet", headers=auth(t.user, ["payee"])
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 200, response.text
        assert response.json()["payout_account"]["status"] == "enabled"


class PaymentWebhook(Scenario):
    """Stripe's ``payment_intent.succeeded``; its handler reads the charge's fee. A
    failed read fails the delivery (Stripe delivers again); the money arrives once."""

    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        response = await t.client.post(
            "/api/v1/topups",
            json={"amount": 5_000, "currency": "eur"},
            headers=t.headers("customer"),
        )
        assert response.status_code == 201, response.text
        intent = stripe_object("payment_intent")
        intent.update(
            id=response.json()["payment_intent_id"],
            amount=5_000,
            amount_received=5_000,
            currency="eur",
            status="succeeded",
            latest_charge=f"ch_{t.user}",
            last_payment_error=None,
            metadata={
                "order_id": response.json()["order_id"].removeprefix("ord_"),
                "user_id": t.user,
                "purpose": "topup",
            },
        )
        t.memo["event"] = make_event("payment_intent.succeeded", intent)
        t.fake.requests.clear()

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        body, headers = signed_webhook(t.memo["event"], TEST_WEBHOOK_SECRET)
        response = await t.client.post("/api/v1/webhooks/stripe", content=body, headers=headers)
        if fault is not None:
            assert response.status_code == 500, response.text
            assert response.json()["code"] == "webhook_processing_failed"
            assert LEAK_MARKER not in response.text
            return
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "processed"

    async def settled(self, t: Harness) -> None:
        balance = await t.client.get("/api/v1/me/balance", headers=auth(t.user))
        assert [(b["currency"], b["available"]) for b in balance.json()["balances"]] == [
            ("eur", 5_000)
        ]
        event_id = t.memo["event"]["id"]
        status = await t.scalar("SELECT status FROM webhook_events WHERE id = :e", e=event_id)
        assert status == "processed"


class Withdrawal(Scenario):
    """A withdrawal holds the money, then transfers it. An unknown outcome (timeout,
    5xx, 429) answers 202 ``pending`` and the recovery job retries the Transfer with
    the same key; a refusal (400) is final and gives the money back."""

    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        await onboard(t)
        await fund(t.session, t.user, 50_000, "usd")

    async def _withdrawal(self, t: Harness) -> dict[str, Any]:
        listed = await t.client.get("/api/v1/me/payouts", headers=auth(t.user, ["payee"]))
        [withdrawal] = listed.json()["withdrawals"]
        found: dict[str, Any] = withdrawal
        return found

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        if "withdrawal" not in t.memo:
            response = await t.client.post(
                "/api/v1/me/payouts",
                json={"amount": 2_000, "currency": "usd"},
                headers=t.headers("payee"),
            )
            assert response.status_code in (201, 202), response.text
            t.memo["withdrawal"] = int(response.json()["id"].removeprefix("wd_"))
            status = response.json()["status"]
        else:  # what the recovery job does for a pending withdrawal
            service = PayoutService(t.state.sessionmaker, t.state.stripe, t.state.settings)
            await service.transfer_and_settle(t.memo["withdrawal"])
            status = (await self._withdrawal(t))["status"]
        expected = {None: "transferred", FaultKind.invalid_request: "failed"}.get(fault, "pending")
        assert status == expected
        assert LEAK_MARKER not in str(await self._withdrawal(t))

    def definite(self, fault: FaultKind) -> bool:
        return fault is FaultKind.invalid_request

    async def settled(self, t: Harness) -> None:
        balance = await t.client.get("/api/v1/me/balance", headers=auth(t.user))
        [usd] = balance.json()["balances"]
        withdrawal = await self._withdrawal(t)
        if withdrawal["status"] == "transferred":
            assert (usd["available"], usd["withdrawing"]) == (48_000, 0)
        else:  # refused: the money is back
            assert withdrawal["status"] == "failed"
            assert (usd["available"], usd["withdrawing"]) == (50_000, 0)


class Reconciliation(Scenario):
    """The admin's reconciliation run of yesterday reads Stripe's balance, balance
    transactions and undelivered events; a failed read fails the run, a rerun works."""

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.post(
            "/api/v1/admin/reconciliation/runs",
            json={},
            headers={**auth("flt_admin", ["admin"]), "Idempotency-Key": uuid.uuid4().hex},
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 201, response.text


class AdminRefund(Scenario):
    """An admin refund holds the amount, then creates the Stripe Refund. An unknown
    outcome answers 202 ``pending`` and is retried (recovery) with the same key; a
    refusal (400) is final and releases the hold."""

    async def prepare(self, t: Harness) -> None:
        await PaymentWebhook().prepare(t)
        await PaymentWebhook().attempt(t, None)  # the pay-in is confirmed: 50.00 eur
        t.memo["order"] = t.memo["event"]["data"]["object"]["metadata"]["order_id"]
        t.fake.requests.clear()

    async def _status(self, t: Harness) -> str:
        response = await t.client.get(
            f"/api/v1/admin/refunds/rfd_{t.memo['refund']}", headers=auth("flt_admin", ["admin"])
        )
        assert response.status_code == 200, response.text
        assert LEAK_MARKER not in response.text
        status: str = response.json()["status"]
        return status

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        if "refund" not in t.memo:
            response = await t.client.post(
                "/api/v1/admin/refunds",
                json={"order_id": f"ord_{t.memo['order']}", "amount": 2_000},
                headers={**auth("flt_admin", ["admin"]), "Idempotency-Key": t.key},
            )
            if fault is FaultKind.invalid_request:  # refused: a clear 409, nothing refunded
                assert response.status_code == 409, response.text
                assert response.json()["code"] == "refund_rejected"
                refund_id = response.json()["refund_id"]
            else:
                assert response.status_code in (201, 202), response.text
                refund_id = response.json()["id"]
            t.memo["refund"] = int(refund_id.removeprefix("rfd_"))
        else:  # what the recovery job does for a pending refund
            service = RefundService(t.state.sessionmaker, t.state.stripe, t.state.settings)
            await service.submit(t.memo["refund"])
        expected = {None: "succeeded", FaultKind.invalid_request: "failed"}.get(fault, "pending")
        assert await self._status(t) == expected

    def definite(self, fault: FaultKind) -> bool:
        return fault is FaultKind.invalid_request

    async def settled(self, t: Harness) -> None:
        balance = await t.client.get("/api/v1/me/balance", headers=auth(t.user))
        [eur] = balance.json()["balances"]
        refunded = await self._status(t) == "succeeded"
        assert eur["available"] == (3_000 if refunded else 5_000)


@dataclass(frozen=True)
class Row:
    gateway_method: str
    verb: str
    stripe_path: str
    scenario: Scenario
    creates: str | None = None
    """The Stripe resource that must exist exactly once at the end."""
    keyed: bool = True
    """Whether every try sends the same Stripe idempotency key (single-use links are
    created fresh on purpose)."""


async def saved_card(t: Harness) -> str:
    """A card the user saved (as setup_intent.succeeded records it): its ``pmt_`` id."""
    card_id = await t.scalar(
        "INSERT INTO payment_methods (user_id, stripe_payment_method_id, brand, last4,"
        " exp_month, exp_year, fingerprint, is_default)"
        " VALUES (:u, :pm, 'visa', '4242', 12, 2031, :fp, true) RETURNING id",
        u=t.user,
        pm=f"pm_{uuid.uuid4().hex[:12]}",
        fp=uuid.uuid4().hex[:16],
    )
    return f"pmt_{card_id}"


class SaveCard(Scenario):
    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.post(
            "/api/v1/me/payment-methods/setup", headers=t.headers("customer")
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 201, response.text
        assert response.json()["setup_intent_id"].startswith("seti_")

    async def settled(self, t: Harness) -> None:
        assert (
            await t.scalar(
                "SELECT count(*) FROM payment_method_setups WHERE user_id = :u"
                " AND stripe_setup_intent_id IS NOT NULL",
                u=t.user,
            )
            == 1
        )


class SavedCardTopup(Scenario):
    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        t.memo["card"] = await saved_card(t)

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.post(
            "/api/v1/topups",
            json={"amount": 5_000, "currency": "eur", "payment_method": t.memo["card"]},
            headers=t.headers("customer"),
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 201, response.text

    async def settled(self, t: Harness) -> None:
        assert (
            await t.scalar(
                "SELECT count(*) FROM orders WHERE user_id = :u AND payment_method_id IS NOT NULL"
                " AND stripe_payment_intent_id IS NOT NULL",
                u=t.user,
            )
            == 1
        )


class RemoveCard(Scenario):
    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        t.memo["card"] = await saved_card(t)

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.delete(
            f"/api/v1/me/payment-methods/{t.memo['card']}", headers=t.headers("customer")
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "detached"

    async def settled(self, t: Harness) -> None:
        assert (
            await t.scalar("SELECT status FROM payment_methods WHERE user_id = :u", u=t.user)
            == "detached"
        )


async def seed_plan(t: Harness) -> None:
    """The plan of tests/fixtures/stripe/price.json (what the fake's subscriptions hold)."""
    from payments_api.stripe.billing_objects import Price, Product
    from payments_api.stripe.objects import parse_object
    from payments_api.subscriptions.plans import PlanCatalog

    catalog = PlanCatalog(t.session)
    await catalog.apply_product(parse_object(Product, stripe_object("product")), 1)
    await catalog.apply_price(parse_object(Price, stripe_object("price")), 1, t.state.stripe)
    await t.session.flush()


class Subscribe(Scenario):
    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        await seed_plan(t)

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.post(
            "/api/v1/me/subscriptions",
            json={"price": stripe_object("price")["id"]},
            headers=t.headers("customer"),
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 201, response.text
        assert response.json()["stripe_subscription_id"].startswith("sub_")

    async def settled(self, t: Harness) -> None:
        rows = await t.scalar(
            "SELECT count(*) FROM subscriptions WHERE user_id = :u"
            " AND stripe_subscription_id IS NOT NULL",
            u=t.user,
        )
        assert rows == 1


class CancelSubscription(Scenario):
    def __init__(self, *, at_period_end: bool) -> None:
        self.at_period_end = at_period_end

    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        await seed_plan(t)
        response = await t.client.post(
            "/api/v1/me/subscriptions",
            json={"price": stripe_object("price")["id"]},
            headers={**auth(t.user, ["customer"]), "Idempotency-Key": "subscribe"},
        )
        assert response.status_code == 201, response.text
        t.memo["subscription"] = response.json()["id"]
        t.fake.requests.clear()

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        response = await t.client.post(
            f"/api/v1/me/subscriptions/{t.memo['subscription']}/cancel",
            json={"at_period_end": self.at_period_end},
            headers=t.headers("customer"),
        )
        if fault is not None:
            assert_problem(response, fault)
            return
        assert response.status_code == 200, response.text
        body = response.json()
        if self.at_period_end:
            assert (body["status"], body["cancel_at_period_end"]) == ("active", True)
        else:
            assert body["status"] == "canceled"


TOPUP, CHECKOUT, ONBOARDING = Topup(), Checkout(), Onboarding()
ROWS = [
    Row("create_customer", "POST", "/v1/customers", TOPUP, "customers"),
    Row("create_payment_intent", "POST", "/v1/payment_intents", TOPUP, "payment_intents"),
    Row("create_checkout_session", "POST", "/v1/checkout/sessions", CHECKOUT, "checkout_sessions"),
    Row("create_express_account", "POST", "/v1/accounts", ONBOARDING, "accounts"),
    Row(
        "create_account_onboarding_link", "POST", "/v1/account_links", ONBOARDING, "accounts", False
    ),
    Row("create_login_link", "POST", "/v1/accounts/[^/]+/login_links", DashboardLink()),
    Row("retrieve_account", "GET", "/v1/accounts/[^/]+", AdminSync()),
    Row("retrieve_charge_with_fee", "GET", "/v1/charges/[^/]+", PaymentWebhook()),
    Row("create_transfer", "POST", "/v1/transfers", Withdrawal(), "transfers"),
    Row("list_payouts", "GET", "/v1/payouts", ListPayouts()),
    Row("create_subscription", "POST", "/v1/subscriptions", Subscribe(), "subscriptions"),
    Row(
        "update_subscription",
        "POST",
        "/v1/subscriptions/[^/]+",
        CancelSubscription(at_period_end=True),
    ),
    Row(
        "cancel_subscription",
        "DELETE",
        "/v1/subscriptions/[^/]+",
        CancelSubscription(at_period_end=False),
    ),
    Row("retrieve_balance", "GET", "/v1/balance", ProjectWallet()),
    Row("create_refund", "POST", "/v1/refunds", AdminRefund(), "refunds"),
    Row("list_balance_transactions", "GET", "/v1/balance_transactions", Reconciliation()),
    Row("list_undelivered_events", "GET", "/v1/events", Reconciliation()),
    Row("create_setup_intent", "POST", "/v1/setup_intents", SaveCard(), "setup_intents"),
    Row(
        "create_confirmed_payment_intent",
        "POST",
        "/v1/payment_intents",
        SavedCardTopup(),
        "payment_intents",
    ),
    Row("detach_payment_method", "POST", "/v1/payment_methods/[^/]+/detach", RemoveCard()),
    # Escrows paid by authorization: the client's answer never waits on Stripe; the
    # escrow.capture job retries (tests/faults/escrow_capture.py).
    Row("capture_payment_intent", "POST", "/v1/payment_intents/[^/]+/capture", CaptureEscrow()),
    Row(
        "cancel_payment_intent",
        "POST",
        "/v1/payment_intents/[^/]+/cancel",
        CancelAuthorizedEscrow(),
    ),
    Row("retrieve_payment_intent", "GET", "/v1/payment_intents/[^/]+", ReadBackIntent()),
]
# Gateway methods without a row yet, and why. A new gateway method must land in one of
# the two tables (see test_every_gateway_call_has_a_row).
NOT_REACHABLE: dict[str, str] = {
    "list_refunds": "refund webhooks and admin refunds: row to add with create_refund",
    "retrieve_charge": "refunds and disputes: row to add with their scenarios",
    "retrieve_dispute": "dispute webhooks: row to add with their scenario",
    "retrieve_application_fee": "reconciliation of fee refunds of fees taken on an earlier "
    "day: row to add with its scenario (tests/reconciliation/test_direct_flows.py)",
    "retrieve_payment_method": "setup_intent.succeeded webhook (a failure is recorded and "
    "retried by the inbox): row to add with a webhook scenario",
    "list_products": "plans sync (admin, CLI): reads only, a failure writes nothing",
    "list_recurring_prices": "plans sync (admin, CLI): reads only, a failure writes nothing",
    "retrieve_product": "price webhooks before their product: a failure retries the event",
    "retrieve_subscription": "a subscribe retry after Stripe's id is recorded: row to add",
    "preview_invoice": "proration preview: a read, nothing to make once",
    "invoice_charge": "invoice.paid's fee: a failure retries the event (ledger cause keys)",
    "pay_invoice": "subscribe with a saved card pays the first invoice after recording "
    "the subscription; a retry reads Stripe's subscription back first, so after a payment "
    "that took effect (the matrix's retry phase) it rightly makes no second call: the "
    "faults are tested in tests/subscriptions/test_subscribe_saved_card.py",
}
FAULTS = list(FaultKind)
PHASES = ["first_try", "retry"]


def gateway_calls() -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(StripeGateway, inspect.iscoroutinefunction)
        if not name.startswith("_") and name != "aclose"
    }


@pytest.fixture
def harness(
    client: httpx.AsyncClient, session: AsyncSession, fake_stripe: FakeStripe, state: AppState
) -> Harness:
    return Harness(client, session, fake_stripe, state)


class TestFaultMatrix:
    def test_every_gateway_call_has_a_row(self) -> None:
        covered = {row.gateway_method for row in ROWS}
        assert gateway_calls() - covered - set(NOT_REACHABLE) == set(), "add a row"
        assert covered & set(NOT_REACHABLE) == set(), "covered now: drop it from NOT_REACHABLE"
        assert covered | set(NOT_REACHABLE) <= gateway_calls(), "a row names no gateway call"

    @pytest.mark.parametrize("phase", PHASES)
    @pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
    @pytest.mark.parametrize("row", ROWS, ids=[r.gateway_method for r in ROWS])
    async def test_fault(self, harness: Harness, row: Row, fault: FaultKind, phase: str) -> None:
        t, scenario = harness, row.scenario
        await scenario.prepare(t)
        if phase == "retry":
            if fault is FaultKind.invalid_request:
                t.fake.fail(row.verb, row.stripe_path, FaultKind.connection_error)
                await scenario.attempt(t, FaultKind.connection_error)
            else:
                t.fake.fail(row.verb, row.stripe_path, FaultKind.timeout, after_effect=True)
                await scenario.attempt(t, FaultKind.timeout)
        t.fake.fail(row.verb, row.stripe_path, fault)
        await scenario.attempt(t, fault)
        assert t.fake.faults == [], "the fault was not reached"
        if not scenario.definite(fault):
            await scenario.attempt(t, None)
        await scenario.settled(t)

        calls = t.fake.calls(row.verb, row.stripe_path)
        tries = (2 if phase == "retry" else 1) + (0 if scenario.definite(fault) else 1)
        assert len(calls) == tries, [c.outcome for c in calls]
        if row.verb == "POST" and row.keyed and row.creates is not None:
            keys = {c.idempotency_key for c in calls}
            assert len(keys) == 1, keys  # every try carried the same Stripe key
            assert None not in keys
        for resource in {c.resource for c in t.fake.created}:
            created = t.fake.created_of(resource)
            if resource in ("account_links", "login_links"):
                continue  # fresh on every call by design (single-use links)
            assert len(created) == 1, (resource, created)
        if row.creates is not None:
            expected = 0 if scenario.definite(fault) else 1
            assert len(t.fake.created_of(row.creates)) == expected
        assert await ledger_invariants(t.session) == []
