"""Direct payments (tips, pay-per-request) through the HTTP API: a destination charge to
the payee's connected account, confirmed only by Stripe's signed events, recorded once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.orders.models import Order
from payments_api.users.models import User
from tests.factories import ledger_invariants
from tests.helpers import auth, make_event, stripe_key, stripe_object
from tests.projects.conftest import (
    Payee,
    completed_session,
    create_project,
    deliver,
    direct_payment_count,
    enable_payouts,
    form_of,
    ledger_postings,
    new_customer,
    new_payee,
    open_session,
    orders_of,
    restrict_payouts,
    start_direct,
    succeeded_intent,
)


@dataclass
class Shop:
    """An enabled payee with a usd project and an open session, and a customer."""

    payee: Payee
    project_id: str
    session_id: str
    customer: str
    customer_headers: dict[str, str]

    def tip(self, amount: Any = 2_500, **extra: Any) -> dict[str, Any]:
        return {
            "payee_id": self.payee.id,
            "project_id": self.project_id,
            "amount": amount,
            "currency": "usd",
            **extra,
        }


async def open_shop(client: httpx.AsyncClient) -> Shop:
    payee = new_payee()
    project_id = await create_project(client, payee)
    session_id = await open_session(client, payee, project_id)
    await enable_payouts(client, payee)
    customer, headers = new_customer()
    return Shop(payee, project_id, session_id, customer, headers)


@pytest.fixture
async def shop(client: httpx.AsyncClient) -> Shop:
    return await open_shop(client)


async def pay(
    client: httpx.AsyncClient,
    session: AsyncSession,
    shop: Shop,
    body: dict[str, Any],
    *,
    confirm: bool = True,
) -> Order:
    """Start a direct payment as the shop's customer and (optionally) let Stripe confirm
    it with ``checkout.session.completed``."""
    response = await start_direct(client, shop.customer_headers, body)
    assert response.status_code == 201, response.text
    order = (await orders_of(session, shop.customer))[-1]
    if confirm:
        pi = f"pi_{uuid.uuid4().hex[:20]}"
        await deliver(
            client, make_event("checkout.session.completed", completed_session(order, pi))
        )
    return order


class TestDirectCheckout:
    async def test_destination_charge_with_application_fee(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
        shop: Shop,
    ) -> None:
        response = await start_direct(
            client, shop.customer_headers, shop.tip(2_500, session_id=shop.session_id)
        )
        assert response.status_code == 201, response.text
        body = response.json()
        [order] = await orders_of(session, shop.customer)
        assert body["order_id"] == f"ord_{order.id}"
        assert body["id"].startswith("cs_test_")
        assert body["url"].startswith("https://checkout.stripe.com/")
        assert (order.purpose, order.status, order.amount, order.currency) == (
            "direct",
            "pending",
            2_500,
            "usd",
        )

        customer_call = stripe_direct.routes["customers"].calls.last.request
        assert customer_call.headers["Idempotency-Key"] == stripe_key("customer", shop.customer)
        call = stripe_direct.routes["sessions"].calls.last.request
        assert call.url.path == "/v1/checkout/sessions"
        assert call.headers["Idempotency-Key"] == stripe_key("checkout_session", order.id)
        assert "Stripe-Account" not in call.headers  # a platform charge, destined onward
        form = form_of(call)
        assert form["mode"] == "payment"
        assert form["customer"] == f"cus_{shop.customer}"
        assert form["line_items[0][price_data][unit_amount]"] == "2500"
        assert form["line_items[0][price_data][currency]"] == "usd"
        assert form["line_items[0][price_data][product_data][name]"] == "Tip: Live show"
        assert form["payment_intent_data[transfer_data][destination]"] == shop.payee.account_id
        # 10% by default, of the amount the customer pays
        assert form["payment_intent_data[application_fee_amount]"] == "250"
        expected_metadata = {
            "order_id": str(order.id),
            "user_id": shop.customer,
            "purpose": "direct",
            "payee_id": shop.payee.id,
            "project_id": shop.project_id,
            "session_id": shop.session_id,
            "kind": "tip",
        }
        for name, value in expected_metadata.items():
            assert form[f"metadata[{name}]"] == value
            assert form[f"payment_intent_data[metadata][{name}]"] == value
        assert "on_behalf_of" not in form
        # nothing is credited or recorded before Stripe confirms
        assert await direct_payment_count(session, order_id=order.id) == 0
        assert await ledger_invariants(session) == []
        wallet = (await client.get("/api/v1/me/balance", headers=shop.customer_headers)).json()
        assert all(b["pending"] == 0 for b in wallet["balances"])

    async def test_fee_rate_is_configured_and_rounded_half_even(
        self,
        app_factory: Callable[..., FastAPI],
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
    ) -> None:
        app = app_factory(direct_application_fee_bps=50)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            shop = await open_shop(client)
            # 0.5% of 13.00 is 6.5 cents: half-even gives 6 (half-up would give 7)
            response = await start_direct(
                client, shop.customer_headers, shop.tip(1_300, kind="request")
            )
            assert response.status_code == 201, response.text
        form = form_of(stripe_direct.routes["sessions"].calls.last.request)
        assert form["payment_intent_data[application_fee_amount]"] == "6"
        assert form["metadata[kind]"] == "request"
        assert "metadata[session_id]" not in form
        assert form["line_items[0][price_data][product_data][name]"] == "Request: Live show"
        [order] = await orders_of(session, shop.customer)
        assert order.reference["application_fee_amount"] == 6

    async def test_same_key_twice_is_one_checkout_session(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
        shop: Shop,
    ) -> None:
        first = await start_direct(client, shop.customer_headers, shop.tip(), key="tip-1")
        second = await start_direct(client, shop.customer_headers, shop.tip(), key="tip-1")
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert stripe_direct.routes["sessions"].call_count == 1
        assert len(await orders_of(session, shop.customer)) == 1


class TestDirectConfirmation:
    @pytest.mark.parametrize("intent_first", [True, False], ids=["intent-first", "session-first"])
    async def test_recorded_once_across_both_events(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
        shop: Shop,
        intent_first: bool,
    ) -> None:
        order = await pay(
            client, session, shop, shop.tip(2_500, session_id=shop.session_id), confirm=False
        )
        pi = f"pi_{uuid.uuid4().hex[:20]}"
        charge = stripe_object("charge")
        fee_txn = stripe_object("balance_transaction")
        fee_txn.update(id=f"txn_{pi}", fee=103, amount=2_500, currency="usd")
        charge.update(id=f"ch_{pi}", balance_transaction=fee_txn)
        charge_route = stripe_direct.get(f"/v1/charges/ch_{pi}").mock(
            return_value=httpx.Response(200, json=charge)
        )
        intent_event = make_event(
            "payment_intent.succeeded", succeeded_intent(order, pi, charge=f"ch_{pi}")
        )
        session_event = make_event("checkout.session.completed", completed_session(order, pi))
        first, second = (
            (intent_event, session_event) if intent_first else (session_event, intent_event)
        )
        for event in (first, second, first, second):
            await deliver(client, event)

        [order] = await orders_of(session, shop.customer)
        assert order.status == "succeeded"
        assert order.stripe_payment_intent_id == pi
        # the platform's application fee, once; the gross is on the payee's account
        assert await ledger_postings(session, f"stripe:payment:{pi}") == [
            ("platform_fees", 250),
            ("stripe_balance", -250),
        ]
        # Stripe's processing fee of the destination charge is the platform's cost
        assert await ledger_postings(session, f"stripe:fee:txn_{pi}") == [
            ("processing_fees", -103),
            ("stripe_balance", 103),
        ]
        assert charge_route.call_count == 1
        assert await direct_payment_count(session, stripe_payment_intent_id=pi) == 1
        assert await ledger_invariants(session) == []
        # no wallet is credited: not the customer's, not the payee's
        for headers in (shop.customer_headers, shop.payee.headers):
            balances = (await client.get("/api/v1/me/balance", headers=headers)).json()
            assert all(b["available"] == 0 for b in balances["balances"])
        # the payee's take, net of the application fee, is an earnings entry
        earnings = (await client.get("/api/v1/me/earnings", headers=shop.payee.headers)).json()
        [entry] = earnings["data"]
        assert entry["source"] == "payment"
        assert entry["payment_id"] == pi
        assert (entry["amount"], entry["currency"]) == (2_250, "usd")
        assert (entry["project_id"], entry["session_id"]) == (shop.project_id, shop.session_id)
        wallet = (
            await client.get(
                f"/api/v1/me/projects/{shop.project_id}/wallet/sessions",
                headers=shop.payee.headers,
            )
        ).json()
        [row] = wallet["data"]
        assert (row["tip_count"], row["total_tip_amount_cents"]) == (1, 2_250)
        orders = (await client.get("/api/v1/orders", headers=shop.customer_headers)).json()
        assert (orders["data"][0]["purpose"], orders["data"][0]["status"]) == (
            "direct",
            "succeeded",
        )

    async def test_no_fee_records_the_payment_without_a_ledger_entry(
        self,
        app_factory: Callable[..., FastAPI],
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
    ) -> None:
        stripe_direct.get("/v1/balance").mock(
            return_value=httpx.Response(200, json=stripe_object("balance"))
        )
        app = app_factory(direct_application_fee_bps=0)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            shop = await open_shop(client)
            order = await pay(client, session, shop, shop.tip(1_000), confirm=False)
            form = form_of(stripe_direct.routes["sessions"].calls.last.request)
            assert "payment_intent_data[application_fee_amount]" not in form
            pi = f"pi_{uuid.uuid4().hex[:20]}"
            for _ in range(2):
                await deliver(
                    client, make_event("payment_intent.succeeded", succeeded_intent(order, pi))
                )
            wallet = (
                await client.get(
                    f"/api/v1/me/projects/{shop.project_id}/wallet", headers=shop.payee.headers
                )
            ).json()
        assert await ledger_postings(session, f"stripe:payment:{pi}") == []
        assert await direct_payment_count(session, stripe_payment_intent_id=pi) == 1
        assert wallet["earnings"]["total_earned_amount_cents"] == 1_000

    async def test_aggregates_per_project_and_session(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        stripe_mock: respx.MockRouter,
        session: AsyncSession,
        shop: Shop,
    ) -> None:
        first = shop.session_id
        for body in (
            shop.tip(1_000, session_id=first, kind="request"),
            shop.tip(1_000, session_id=first, kind="request"),
            shop.tip(2_000, session_id=first),
        ):
            await pay(client, session, shop, body)
        closed = await client.post(
            f"/api/v1/me/projects/{shop.project_id}/sessions/{first}/close",
            headers=shop.payee.headers,
        )
        assert closed.status_code == 200, closed.text
        second = await open_session(client, shop.payee, shop.project_id)
        await pay(client, session, shop, shop.tip(1_500, session_id=second))
        await pay(client, session, shop, shop.tip(1_200, kind="request"))  # no session
        # started but never confirmed by Stripe: not counted
        await pay(client, session, shop, shop.tip(5_000, session_id=second), confirm=False)
        # another project of the same payee: not counted in this one
        other_project = await create_project(client, shop.payee, name="Other")
        await pay(client, session, shop, {**shop.tip(3_000), "project_id": other_project})

        stripe_mock.get("/v1/balance").mock(
            return_value=httpx.Response(200, json=stripe_object("balance"))
        )
        wallet = await client.get(
            f"/api/v1/me/projects/{shop.project_id}/wallet", headers=shop.payee.headers
        )
        assert wallet.status_code == 200, wallet.text
        earnings = wallet.json()["earnings"]
        assert earnings == {
            "currency": "usd",
            "payment_count": 5,
            "paid_request_count": 3,
            "tip_count": 2,
            "total_tip_amount_cents": 1_800 + 1_350,
            "total_request_amount_cents": 900 + 900 + 1_080,
            "total_earned_amount_cents": 1_800 + 1_350 + 900 + 900 + 1_080,
            "last_paid_at": earnings["last_paid_at"],
            "session_count": 2,
        }
        assert earnings["last_paid_at"] is not None

        sessions = await client.get(
            f"/api/v1/me/projects/{shop.project_id}/wallet/sessions", headers=shop.payee.headers
        )
        assert sessions.status_code == 200, sessions.text
        newest, oldest = sessions.json()["data"]
        assert (newest["id"], newest["status"], newest["closed_at"]) == (second, "open", None)
        assert (newest["paid_request_count"], newest["tip_count"]) == (0, 1)
        assert newest["total_tip_amount_cents"] == 1_350
        assert (oldest["id"], oldest["status"]) == (first, "closed")
        assert oldest["closed_at"] is not None
        assert oldest["opened_at"] < oldest["closed_at"]
        assert (oldest["paid_request_count"], oldest["tip_count"]) == (2, 1)
        assert oldest["total_tip_amount_cents"] == 1_800
        assert oldest["total_request_amount_cents"] == 1_800
        assert oldest["total_earned_amount_cents"] == 3_600
        assert await ledger_invariants(session) == []

    @pytest.mark.parametrize(
        "event_type", ["checkout.session.expired", "checkout.session.async_payment_failed"]
    )
    async def test_failed_payment_records_nothing(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
        shop: Shop,
        event_type: str,
    ) -> None:
        order = await pay(client, session, shop, shop.tip(), confirm=False)
        unpaid = completed_session(order, "pi_never")
        unpaid.update(payment_status="unpaid", status="expired", payment_intent=None)
        await deliver(client, make_event(event_type, unpaid))
        [order] = await orders_of(session, shop.customer)
        assert order.status in ("expired", "failed")
        assert await direct_payment_count(session, order_id=order.id) == 0
        assert await ledger_postings(session, "stripe:payment:pi_never") == []


BAD_INPUT: list[Any] = [
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(payee_id="nobody-at-all")),
        404,
        "payee_not_found",
        id="unknown-payee",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(payee_id=o["customer_only"].id)),
        404,
        "payee_not_found",
        id="user-without-payee-role",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(payee_id=None)),
        404,
        "payee_not_found",
        id="no-payee",
    ),
    pytest.param(
        lambda s, o: (
            s.customer_headers,
            s.tip(payee_id=o["no_account"].id, project_id=o["no_account_project"]),
        ),
        409,
        "payee_account_not_ready",
        id="payee-without-payout-account",
    ),
    pytest.param(
        lambda s, o: (
            s.customer_headers,
            s.tip(payee_id=o["pending"].id, project_id=o["pending_project"]),
        ),
        409,
        "payee_account_not_ready",
        id="payee-with-account-not-enabled",
    ),
    pytest.param(
        lambda s, o: (s.payee.headers, s.tip()),
        422,
        "direct_payment_to_self",
        id="paying-yourself",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(20.5)), 422, "validation_error", id="float"
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(25.0)),
        422,
        "validation_error",
        id="integral-float",
    ),
    pytest.param(lambda s, o: (s.customer_headers, s.tip(0)), 422, "validation_error", id="zero"),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(-500)), 422, "validation_error", id="negative"
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip("2500")), 422, "validation_error", id="string"
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(999)),
        422,
        "amount_out_of_range",
        id="below-minimum",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(None)),
        422,
        "amount_out_of_range",
        id="no-amount",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(kind="gift")),
        422,
        "validation_error",
        id="unknown-kind",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(currency="eur")),
        422,
        "currency_mismatch",
        id="not-the-project-currency",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(project_id=None)),
        404,
        "project_not_found",
        id="no-project",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(project_id="prj_999999999")),
        404,
        "project_not_found",
        id="unknown-project",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(project_id="ses_1")),
        404,
        "project_not_found",
        id="malformed-project-id",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(project_id=o["other_project"])),
        404,
        "project_not_found",
        id="another-payees-project",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(project_id=o["archived_project"])),
        409,
        "project_archived",
        id="archived-project",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(session_id="ses_999999999")),
        404,
        "session_not_found",
        id="unknown-session",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(session_id=o["other_session"])),
        404,
        "session_not_found",
        id="session-of-another-project",
    ),
    pytest.param(
        lambda s, o: (s.customer_headers, s.tip(session_id=o["closed_session"])),
        409,
        "session_closed",
        id="closed-session",
    ),
    pytest.param(
        lambda s, o: (
            s.customer_headers,
            s.tip(success_url="https://evil.example/steal"),
        ),
        422,
        "redirect_url_not_allowed",
        id="foreign-success-url",
    ),
]


class TestDirectBadInput:
    @pytest.fixture
    async def others(self, client: httpx.AsyncClient, shop: Shop) -> dict[str, Any]:
        """Everything the refusals need, set up through the API."""
        customer_only = new_payee()
        # a known user who is not a payee (the token says customer)
        me = await client.get("/api/v1/me", headers=auth(customer_only.id, ["customer"]))
        assert me.status_code == 200, me.text
        no_account = new_payee()
        no_account_project = await create_project(client, no_account)
        pending = new_payee()
        pending_project = await create_project(client, pending)
        await restrict_payouts(client, pending)  # Stripe: onboarding not finished
        other = new_payee()
        other_project = await create_project(client, other)
        other_session = await open_session(client, other, other_project)
        archived_project = await create_project(client, shop.payee, name="Old")
        archived = await client.patch(
            f"/api/v1/me/projects/{archived_project}",
            json={"status": "archived"},
            headers=shop.payee.headers,
        )
        assert archived.status_code == 200, archived.text
        # the shop's session is closed and a fresh one opened for the valid payments
        closed = await client.post(
            f"/api/v1/me/projects/{shop.project_id}/sessions/{shop.session_id}/close",
            headers=shop.payee.headers,
        )
        assert closed.status_code == 200, closed.text
        closed_session = shop.session_id
        shop.session_id = await open_session(client, shop.payee, shop.project_id)
        return {
            "customer_only": customer_only,
            "no_account": no_account,
            "no_account_project": no_account_project,
            "pending": pending,
            "pending_project": pending_project,
            "other_project": other_project,
            "other_session": other_session,
            "archived_project": archived_project,
            "closed_session": closed_session,
        }

    @pytest.mark.parametrize(("build", "status", "code"), BAD_INPUT)
    async def test_refused_with_a_problem_and_nothing_written(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
        shop: Shop,
        others: dict[str, Any],
        build: Callable[[Shop, dict[str, Any]], tuple[dict[str, str], dict[str, Any]]],
        status: int,
        code: str,
    ) -> None:
        headers, body = build(shop, others)
        response = await start_direct(client, headers, body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == code
        assert problem["status"] == status
        assert problem["type"].endswith(f"/{code}")
        # nothing written, nothing asked of Stripe
        assert stripe_direct.routes["customers"].call_count == 0
        assert stripe_direct.routes["sessions"].call_count == 0
        assert await orders_of(session, shop.customer) == []
        assert await orders_of(session, shop.payee.id) == []
        assert await session.get(User, shop.customer) is None
        assert await direct_payment_count(session) == 0


class TestConcurrentConfirmations:
    async def test_both_events_delivered_at_once_record_one_payment(
        self,
        committed_client: httpx.AsyncClient,
        engine: AsyncEngine,
        stripe_direct: respx.MockRouter,
    ) -> None:
        # Committed for real (fresh users, unique ids): twin deliveries race in separate
        # transactions, as they do behind a load balancer.
        shop = await open_shop(committed_client)
        response = await start_direct(committed_client, shop.customer_headers, shop.tip(4_000))
        assert response.status_code == 201, response.text
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as reader:
            [order] = await orders_of(reader, shop.customer)
        pi = f"pi_{uuid.uuid4().hex[:20]}"
        events = [
            make_event("checkout.session.completed", completed_session(order, pi)),
            make_event("payment_intent.succeeded", succeeded_intent(order, pi)),
        ]
        deliveries: list[Awaitable[httpx.Response]] = [
            deliver(committed_client, event) for event in events * 3
        ]
        await asyncio.gather(*deliveries)
        async with sessions() as reader:
            assert await direct_payment_count(reader, stripe_payment_intent_id=pi) == 1
            assert await ledger_postings(reader, f"stripe:payment:{pi}") == [
                ("platform_fees", 400),
                ("stripe_balance", -400),
            ]
            [order] = await orders_of(reader, shop.customer)
            assert order.status == "succeeded"
        earnings = (
            await committed_client.get("/api/v1/me/earnings", headers=shop.payee.headers)
        ).json()
        assert [e["amount"] for e in earnings["data"]] == [3_600]
