"""The fault matrix over the sandbox (issue #17): every outgoing Stripe call x every
failure x when it strikes. The sandbox is the stateful Stripe, ``FaultInjector`` (a respx
layer in front of it) records what was sent and fails the planned try. Rows are Stripe
calls (a public method of ``StripeGateway``, the Stripe path it hits, the client's
request that reaches it); columns are faults (timeout, connection error, 500, 429, 400
with Stripe's error shape) and phases (tests/faults/matrix.py). The calls the service
retries on its own (webhook reads, escrow captures) are rows of
tests/faults/test_sandbox_recovered_faults.py.

Each cell asserts what reached Stripe (path, form parameters, one Idempotency-Key on
every try, Stripe-Account only on the payee's account) and the money outcome: exactly
one Stripe object made, one order, ledger invariants hold; every failed try is a clear
problem (503 + ``Retry-After``, 502 ``payment_provider_error``, or the route's
documented outcome), never Stripe's own words.

Adding a gateway method: add a row, or name it in ``NOT_REACHABLE`` with the reason;
``test_every_gateway_call_has_a_row`` enforces it.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from payments_api.ledger.kinds import AccountKind
from payments_api.payouts.service import PayoutService
from payments_api.refunds.service import RefundService
from payments_api.state import AppState
from payments_api.stripe.gateway import StripeGateway
from tests.factories import create_user, ledger_invariants
from tests.faults.fault_injector import LEAK_MARKER, FaultInjector, FaultKind
from tests.faults.matrix import FAULT_IDS, FAULTS, PHASES, assert_problem, fault_then_recovery
from tests.faults.test_sandbox_recovered_faults import FLOWS
from tests.helpers import auth
from tests.sandbox.helpers import Sandbox
from tests.sandbox.test_saved_cards import save
from tests.sandbox.test_subscriptions import make_plan

Request = Callable[[Sandbox, dict[str, str]], Awaitable[httpx.Response]]


@dataclass
class SandboxRow:
    gateway_method: str
    stripe_path: str
    request: Request
    """The client's request that reaches the Stripe call (same Idempotency-Key each try)."""
    ok_status: int
    stripe_object: str | None
    """The sandbox object type the call makes (exactly one must exist at the end)."""
    form: dict[str, str]
    """Form parameters every try must carry (a subset of what was sent)."""
    keyed: bool = True
    """Whether every try must carry the same Idempotency-Key (links are fresh each call)."""
    local: tuple[int, int] = (1, 0)
    """The user's orders and payout accounts at the end (one each at most, never two)."""
    verb: str = "POST"
    prepare: Callable[[Sandbox, dict[str, str]], Awaitable[None]] | None = None
    connected: bool = False
    """Whether the call is made on the payee's connected account (Stripe-Account)."""


async def topup(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        "/api/v1/topups",
        json={"amount": 5_000, "currency": "eur"},
        headers={**auth(t["user"], ["customer"]), "Idempotency-Key": t["key"]},
    )


async def checkout(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        "/api/v1/checkout/sessions",
        json={
            "purpose": "topup",
            "amount": 2_500,
            "currency": "usd",
            "success_url": "http://localhost:3000/wallet?paid=1",
            "cancel_url": "http://localhost:3000/wallet",
        },
        headers={**auth(t["user"], ["customer"]), "Idempotency-Key": t["key"]},
    )


async def onboarding(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        "/api/v1/me/payout-account/onboarding-link", headers=auth(t["user"], ["payee"])
    )


async def save_card(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        "/api/v1/me/payment-methods/setup",
        headers={**auth(t["user"], ["customer"]), "Idempotency-Key": t["key"]},
    )


async def onboarded(sandbox: Sandbox, t: dict[str, str]) -> None:
    """An onboarded payee (the sandbox's onboarding page submitted, account.updated
    delivered)."""
    t["account"] = await sandbox.onboard(t["user"])


async def onboarded_project(sandbox: Sandbox, t: dict[str, str]) -> None:
    await onboarded(sandbox, t)
    response = await sandbox.client.post(
        "/api/v1/me/projects",
        json={"name": "Stall", "currency": "usd"},
        headers={**auth(t["user"], ["payee"]), "Idempotency-Key": f"project-{t['key']}"},
    )
    assert response.status_code == 201, response.text
    t["project"] = response.json()["id"]


async def dashboard_link(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        "/api/v1/me/payout-account/dashboard-link", headers=auth(t["user"], ["payee"])
    )


async def admin_sync(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        f"/api/v1/admin/payout-accounts/{t['user']}/sync",
        headers=auth(f"admin_{t['user']}", ["admin"]),
    )


async def list_payouts(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.get("/api/v1/me/payouts", headers=auth(t["user"], ["payee"]))


async def project_wallet(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.get(
        f"/api/v1/me/projects/{t['project']}/wallet", headers=auth(t["user"], ["payee"])
    )


async def reconciliation(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        "/api/v1/admin/reconciliation/runs",
        json={},
        headers={**auth("flt_admin", ["admin"]), "Idempotency-Key": uuid.uuid4().hex},
    )


async def saved_card(sandbox: Sandbox, t: dict[str, str]) -> None:
    """A card saved on the sandbox's hosted page (setup_intent.succeeded delivered)."""
    [card] = await save(sandbox, t["user"], "4242424242424242")
    t["card"] = card["id"]


async def saved_card_topup(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        "/api/v1/topups",
        json={"amount": 5_000, "currency": "eur", "payment_method": t["card"]},
        headers={**auth(t["user"], ["customer"]), "Idempotency-Key": t["key"]},
    )


async def remove_card(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.delete(
        f"/api/v1/me/payment-methods/{t['card']}",
        headers={**auth(t["user"], ["customer"]), "Idempotency-Key": t["key"]},
    )


async def plan(sandbox: Sandbox, t: dict[str, str]) -> None:
    """A monthly plan made at the sandbox, its product and price events delivered."""
    t["price"] = await make_plan(sandbox)
    assert await sandbox.deliver() == ["product.created", "price.created"]


async def subscribe(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        "/api/v1/me/subscriptions",
        json={"price": t["price"]},
        headers={**auth(t["user"], ["customer"]), "Idempotency-Key": t["key"]},
    )


async def subscribed(sandbox: Sandbox, t: dict[str, str]) -> None:
    await plan(sandbox, t)
    response = await subscribe(sandbox, {**t, "key": f"subscribe-{t['key']}"})
    assert response.status_code == 201, response.text
    t["subscription"] = response.json()["id"]


async def cancel_at_period_end(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        f"/api/v1/me/subscriptions/{t['subscription']}/cancel",
        json={"at_period_end": True},
        headers={**auth(t["user"], ["customer"]), "Idempotency-Key": t["key"]},
    )


async def cancel_now(sandbox: Sandbox, t: dict[str, str]) -> httpx.Response:
    return await sandbox.client.post(
        f"/api/v1/me/subscriptions/{t['subscription']}/cancel",
        json={"at_period_end": False},
        headers={**auth(t["user"], ["customer"]), "Idempotency-Key": t["key"]},
    )


ROWS = [
    SandboxRow("create_customer", "/v1/customers", topup, 201, "customer", {}),
    SandboxRow(
        "create_payment_intent",
        "/v1/payment_intents",
        topup,
        201,
        "payment_intent",
        {"amount": "5000", "currency": "eur"},
    ),
    SandboxRow(
        "create_checkout_session",
        "/v1/checkout/sessions",
        checkout,
        201,
        "checkout.session",
        {"mode": "payment"},
    ),
    SandboxRow(
        "create_express_account", "/v1/accounts", onboarding, 200, "account", {}, local=(0, 1)
    ),
    SandboxRow(
        "create_account_onboarding_link",
        "/v1/account_links",
        onboarding,
        200,
        "account",
        {"type": "account_onboarding"},
        keyed=False,
        local=(0, 1),
    ),
    SandboxRow(
        "create_setup_intent",
        "/v1/setup_intents",
        save_card,
        201,
        "setup_intent",
        {},
        local=(0, 0),
    ),
    SandboxRow(
        "create_login_link",
        "/v1/accounts/[^/]+/login_links",
        dashboard_link,
        200,
        None,
        {},
        keyed=False,
        local=(0, 1),
        prepare=onboarded,
    ),
    SandboxRow(
        "retrieve_account",
        "/v1/accounts/[^/]+",
        admin_sync,
        200,
        None,
        {},
        local=(0, 1),
        verb="GET",
        prepare=onboarded,
    ),
    SandboxRow(
        "list_payouts",
        "/v1/payouts",
        list_payouts,
        200,
        None,
        {},
        local=(0, 1),
        verb="GET",
        prepare=onboarded,
        connected=True,
    ),
    SandboxRow(
        "retrieve_balance",
        "/v1/balance",
        project_wallet,
        200,
        None,
        {},
        local=(0, 1),
        verb="GET",
        prepare=onboarded_project,
        connected=True,
    ),
    SandboxRow(
        "list_balance_transactions",
        "/v1/balance_transactions",
        reconciliation,
        201,
        None,
        {},
        local=(0, 0),
        verb="GET",
    ),
    SandboxRow(
        "list_undelivered_events",
        "/v1/events",
        reconciliation,
        201,
        None,
        {"delivery_success": "false"},
        local=(0, 0),
        verb="GET",
    ),
    SandboxRow(
        "create_confirmed_payment_intent",
        "/v1/payment_intents",
        saved_card_topup,
        201,
        "payment_intent",
        {"amount": "5000", "currency": "eur", "confirm": "true"},
        prepare=saved_card,
    ),
    SandboxRow(
        "detach_payment_method",
        "/v1/payment_methods/[^/]+/detach",
        remove_card,
        200,
        None,
        {},
        local=(0, 0),
        prepare=saved_card,
    ),
    SandboxRow(
        "create_subscription",
        "/v1/subscriptions",
        subscribe,
        201,
        "subscription",
        {},
        local=(0, 0),
        prepare=plan,
    ),
    SandboxRow(
        "update_subscription",
        "/v1/subscriptions/[^/]+",
        cancel_at_period_end,
        200,
        "subscription",
        {"cancel_at_period_end": "true"},
        local=(0, 0),
        prepare=subscribed,
    ),
    # A DELETE: Stripe does not replay it by key, so a retry after a lost answer finds
    # the subscription canceled already (the gateway reads it back).
    SandboxRow(
        "cancel_subscription",
        "/v1/subscriptions/[^/]+",
        cancel_now,
        200,
        "subscription",
        {},
        local=(0, 0),
        verb="DELETE",
        prepare=subscribed,
    ),
]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
@pytest.mark.parametrize("row", ROWS, ids=[r.gateway_method for r in ROWS])
async def test_fault(
    sandbox: Sandbox, faulty: FaultInjector, row: SandboxRow, fault: FaultKind, phase: str
) -> None:
    t = {"user": f"flt_{uuid.uuid4().hex[:10]}", "key": f"idem-{uuid.uuid4().hex}"}
    async with sandbox.sessionmaker.begin() as session:
        await create_user(session, id=t["user"], roles=["customer", "payee"])
    if row.prepare is not None:
        await row.prepare(sandbox, t)
        faulty.requests.clear()
    if phase == "retry":  # the first try took effect at Stripe, its answer was lost
        lost = FaultKind.connection_error
        if fault is not FaultKind.invalid_request:
            lost = FaultKind.timeout
        faulty.fail(row.verb, row.stripe_path, lost, after_effect=lost is FaultKind.timeout)
        assert_problem(await row.request(sandbox, t), lost)
    faulty.fail(row.verb, row.stripe_path, fault)
    assert_problem(await row.request(sandbox, t), fault)
    assert faulty.faults == [], "the fault was not reached"
    response = await row.request(sandbox, t)
    assert response.status_code == row.ok_status, response.text

    calls = faulty.calls(row.verb, row.stripe_path)
    assert len(calls) == (3 if phase == "retry" else 2), [c.outcome for c in calls]
    if row.keyed and row.verb == "POST":  # reads carry no key
        keys = {c.idempotency_key for c in calls}
        assert len(keys) == 1, keys  # every try carried the same Stripe key
        assert None not in keys
    for call in calls:
        assert call.stripe_account == (t["account"] if row.connected else None)
        assert {k: call.form.get(k) for k in row.form} == row.form
    if row.stripe_object is not None:
        made = await sandbox.objects_of(row.stripe_object)
        assert len(made) == 1, made  # one Stripe object, whatever the retries
    async with sandbox.sessionmaker() as session:
        assert await ledger_invariants(session) == []
        orders = await session.scalar(
            text("SELECT count(*) FROM orders WHERE user_id = :u"), {"u": t["user"]}
        )
        accounts = await session.scalar(
            text("SELECT count(*) FROM payout_accounts WHERE user_id = :u"), {"u": t["user"]}
        )
    assert (orders, accounts) == row.local


async def withdrawal_status(sandbox: Sandbox, user: str) -> str:
    listed = await sandbox.client.get("/api/v1/me/payouts", headers=auth(user, ["payee"]))
    assert listed.status_code == 200, listed.text
    assert LEAK_MARKER not in listed.text
    [withdrawal] = listed.json()["withdrawals"]
    status: str = withdrawal["status"]
    return status


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
async def test_withdrawal_fault(
    sandbox: Sandbox,
    sandbox_app: FastAPI,
    faulty: FaultInjector,
    fault: FaultKind,
    phase: str,
) -> None:
    """create_transfer: a withdrawal holds the money, then transfers it. An unknown
    outcome answers ``pending`` and the recovery job retries the Transfer with the same
    key; a refusal (400) is final and gives the money back. Money is moved once."""
    state: AppState = sandbox_app.state.resources
    user, key = f"flt_{uuid.uuid4().hex[:10]}", f"idem-{uuid.uuid4().hex}"
    account = await sandbox.onboard(user)
    await sandbox.top_up(user, 20_000, ["customer", "payee"])
    faulty.requests.clear()
    withdrawal: list[int] = []

    async def attempt(expected: FaultKind | None) -> None:
        if not withdrawal:
            response = await sandbox.client.post(
                "/api/v1/me/payouts",
                json={"amount": 5_000, "currency": "usd"},
                headers={**auth(user, ["payee"]), "Idempotency-Key": key},
            )
            assert response.status_code in (201, 202), response.text
            withdrawal.append(int(response.json()["id"].removeprefix("wd_")))
        else:  # what the recovery job does for a pending withdrawal
            service = PayoutService(state.sessionmaker, state.stripe, state.settings)
            await service.transfer_and_settle(withdrawal[0])
        status = {None: "transferred", FaultKind.invalid_request: "failed"}.get(expected, "pending")
        assert await withdrawal_status(sandbox, user) == status

    definite = fault is FaultKind.invalid_request
    calls = await fault_then_recovery(faulty, "/v1/transfers", fault, phase, attempt)
    for call in calls:
        assert call.stripe_account is None  # the platform transfers to the payee
        assert (call.form["amount"], call.form["currency"], call.form["destination"]) == (
            "5000",
            "usd",
            account,
        )
    transfers = [t for t in await sandbox.objects_of("transfer") if t["destination"] == account]
    assert [t["amount"] for t in transfers] == ([] if definite else [5_000])
    assert await sandbox.balance(user) == (20_000 if definite else 15_000)
    assert await sandbox.balance(user, AccountKind.withdrawing) == 0
    async with sandbox.sessionmaker() as session:
        assert await ledger_invariants(session) == []


async def refund_status(sandbox: Sandbox, refund: int) -> str:
    response = await sandbox.client.get(
        f"/api/v1/admin/refunds/rfd_{refund}", headers=auth("flt_admin", ["admin"])
    )
    assert response.status_code == 200, response.text
    assert LEAK_MARKER not in response.text
    status: str = response.json()["status"]
    return status


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
async def test_refund_fault(
    sandbox: Sandbox,
    sandbox_app: FastAPI,
    faulty: FaultInjector,
    fault: FaultKind,
    phase: str,
) -> None:
    """create_refund: an admin refund of a paid top-up holds the amount, then creates the
    Stripe Refund. An unknown outcome answers ``pending`` and is retried (recovery) with
    the same key; a refusal (400) is final, a clear 409, and releases the hold."""
    state: AppState = sandbox_app.state.resources
    user, key = f"flt_{uuid.uuid4().hex[:10]}", f"idem-{uuid.uuid4().hex}"
    paid = await sandbox.top_up(user, 20_000)
    faulty.requests.clear()
    refund: list[int] = []

    async def attempt(expected: FaultKind | None) -> None:
        if not refund:
            response = await sandbox.client.post(
                "/api/v1/admin/refunds",
                json={"order_id": paid["order_id"], "amount": 2_000},
                headers={**auth("flt_admin", ["admin"]), "Idempotency-Key": key},
            )
            if expected is FaultKind.invalid_request:  # refused: nothing refunded
                assert response.status_code == 409, response.text
                assert response.json()["code"] == "refund_rejected"
                refund.append(int(response.json()["refund_id"].removeprefix("rfd_")))
            else:
                assert response.status_code in (201, 202), response.text
                refund.append(int(response.json()["id"].removeprefix("rfd_")))
        else:  # what the recovery job does for a pending refund
            service = RefundService(state.sessionmaker, state.stripe, state.settings)
            await service.submit(refund[0])
        status = {None: "succeeded", FaultKind.invalid_request: "failed"}.get(expected, "pending")
        assert await refund_status(sandbox, refund[0]) == status

    definite = fault is FaultKind.invalid_request
    calls = await fault_then_recovery(faulty, "/v1/refunds", fault, phase, attempt)
    for call in calls:
        assert call.stripe_account is None
        assert call.form["amount"] == "2000"
    refunds = [r["amount"] for r in await sandbox.objects_of("refund")]
    assert refunds == ([] if definite else [2_000])
    assert await sandbox.balance(user) == (20_000 if definite else 18_000)
    async with sandbox.sessionmaker() as session:
        assert await ledger_invariants(session) == []


# Gateway calls with a test of their own above: the service's recovery, not the client,
# retries them.
OWN_TESTS = {"create_transfer": test_withdrawal_fault, "create_refund": test_refund_fault}
# Gateway methods without a row yet, and why. A new gateway method must have a row or
# land here (see test_every_gateway_call_has_a_row).
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


def gateway_calls() -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(StripeGateway, inspect.iscoroutinefunction)
        if not name.startswith("_") and name != "aclose"
    }


def test_every_gateway_call_has_a_row() -> None:
    """The sandbox matrix (this module's rows, the tests of their own, the recovered
    flows) covers every gateway call."""
    covered = (
        {row.gateway_method for row in ROWS}
        | set(OWN_TESTS)
        | {flow.gateway_method for flow in FLOWS}
    )
    assert gateway_calls() - covered - set(NOT_REACHABLE) == set(), "add a row"
    assert covered & set(NOT_REACHABLE) == set(), "covered now: drop it from NOT_REACHABLE"
    assert covered | set(NOT_REACHABLE) <= gateway_calls(), "a row names no gateway call"
