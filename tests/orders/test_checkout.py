"""Pay-ins through the HTTP API, with respx answering as Stripe does and webhooks
signed as Stripe signs them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.orders.models import DiscountCode, Order, Price
from payments_api.users.models import User
from payments_api.webhooks.models import WebhookEvent
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.factories import emitted, ledger_invariants
from tests.helpers import auth, make_event, signed_webhook, stripe_key, stripe_object
from tests.orders.conftest import order_count

URLS = {
    "success_url": "http://localhost:3000/wallet?paid=1",
    "cancel_url": "http://localhost:3000/wallet",
}


def topup(amount: Any = 2_000, currency: str = "usd", **extra: Any) -> dict[str, Any]:
    return {"purpose": "topup", "amount": amount, "currency": currency, **URLS, **extra}


async def start_checkout(
    client: httpx.AsyncClient, user: str, body: dict[str, Any], key: str = "key-1"
) -> httpx.Response:
    return await client.post(
        "/api/v1/checkout/sessions",
        json=body,
        headers={**auth(user), "Idempotency-Key": key},
    )


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    body, headers = signed_webhook(event, TEST_WEBHOOK_SECRET)
    return await client.post("/api/v1/webhooks/stripe", content=body, headers=headers)


def completed_session(
    order: Order, *, payment_intent: str = "pi_paid_1", paid: bool = True
) -> dict[str, Any]:
    session = stripe_object("checkout.session")
    session.update(
        id=order.stripe_checkout_session_id,
        amount_total=order.amount,
        currency=order.currency,
        payment_status="paid" if paid else "unpaid",
        status="complete",
        payment_intent=payment_intent,
        metadata={"order_id": str(order.id), "user_id": order.user_id, "purpose": "topup"},
    )
    return session


def succeeded_intent(
    order: Order, payment_intent: str, charge: str | None = None
) -> dict[str, Any]:
    intent = stripe_object("payment_intent")
    intent.update(
        id=payment_intent,
        amount=order.amount,
        amount_received=order.amount,
        currency=order.currency,
        status="succeeded",
        latest_charge=charge,
        last_payment_error=None,
        metadata={"order_id": str(order.id), "user_id": order.user_id, "purpose": "topup"},
    )
    return intent


async def balance(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    body = (await client.get("/api/v1/me/balance", headers=auth(user))).json()
    return {b["currency"]: b for b in body["balances"]}


async def catalog_rows(session: AsyncSession) -> tuple[int, int]:
    prices = await session.scalar(select(func.count()).select_from(Price))
    discounts = await session.scalar(select(func.count()).select_from(DiscountCode))
    return int(prices or 0), int(discounts or 0)


async def the_order(session: AsyncSession, user: str) -> Order:
    order = await session.scalar(
        select(Order).where(Order.user_id == user).execution_options(populate_existing=True)
    )
    assert order is not None
    return order


class TestCheckoutTopup:
    async def test_session_created_with_our_ids_and_keys(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        response = await start_checkout(client, "alice", topup(2_500))
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["id"].startswith("cs_test_")
        assert body["url"].startswith("https://checkout.stripe.com/")
        order = await the_order(session, "alice")
        assert body["order_id"] == f"ord_{order.id}"

        customer_call = stripe_payins.routes["customers"].calls.last.request
        assert customer_call.headers["Idempotency-Key"] == stripe_key("customer", "alice")
        call = stripe_payins.routes["sessions"].calls.last.request
        assert call.url.path == "/v1/checkout/sessions"
        assert call.headers["Idempotency-Key"] == stripe_key("checkout_session", order.id)
        form = {k: v[0] for k, v in parse_qs(call.content.decode()).items()}
        assert form["mode"] == "payment"
        assert form["customer"] == stripe_object("customer")["id"]
        assert form["line_items[0][price_data][unit_amount]"] == "2500"
        assert form["line_items[0][price_data][currency]"] == "usd"
        assert form["metadata[order_id]"] == str(order.id)
        assert form["payment_intent_data[metadata][order_id]"] == str(order.id)
        assert form["success_url"] == URLS["success_url"]

        user = await session.get(User, "alice", populate_existing=True)
        assert user is not None
        assert user.stripe_customer_id == stripe_object("customer")["id"]
        # pending until Stripe says otherwise: the success URL is never a signal
        assert order.status == "pending"
        wallet = await balance(client, "alice")
        assert wallet["usd"]["available"] == 0
        assert wallet["usd"]["pending"] == 2_500

    async def test_paid_session_credits_once_whatever_the_event_order(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        await start_checkout(client, "bob", topup(2_000))
        order = await the_order(session, "bob")
        charge = stripe_object("charge")
        fee_txn = stripe_object("balance_transaction")
        fee_txn.update(fee=88, amount=2_000, currency="usd")
        charge.update(id="ch_bob", balance_transaction=fee_txn)
        charge_route = stripe_payins.get("/v1/charges/ch_bob").mock(
            return_value=httpx.Response(200, json=charge)
        )
        intent_event = make_event(
            "payment_intent.succeeded", succeeded_intent(order, "pi_bob", "ch_bob")
        )
        session_event = make_event(
            "checkout.session.completed", completed_session(order, payment_intent="pi_bob")
        )
        # the intent's event first, then the session's; then both again
        for event in (intent_event, session_event, intent_event, session_event):
            response = await deliver(client, event)
            assert response.status_code == 200, response.text
        assert (await balance(client, "bob"))["usd"]["available"] == 2_000
        assert charge_route.calls.last.request.url.params["expand[0]"] == "balance_transaction"
        order = await the_order(session, "bob")
        assert order.status == "succeeded"
        assert order.processing_fee_amount == 88
        assert await ledger_invariants(session) == []
        orders = (await client.get("/api/v1/orders", headers=auth("bob"))).json()
        assert orders["data"][0]["status"] == "succeeded"
        # Four deliveries of two events about one payment: one outgoing event.
        [(kind, payload)] = await emitted(session, "bob")
        assert kind == "topup.succeeded"
        assert payload == orders["data"][0]

    async def test_session_event_first(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        await start_checkout(client, "carol", topup(3_000))
        order = await the_order(session, "carol")
        await deliver(
            client,
            make_event(
                "checkout.session.completed", completed_session(order, payment_intent="pi_c")
            ),
        )
        await deliver(
            client, make_event("payment_intent.succeeded", succeeded_intent(order, "pi_c"))
        )
        assert (await balance(client, "carol"))["usd"]["available"] == 3_000

    async def test_unpaid_completion_waits_for_async_success(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        await start_checkout(client, "dave", topup(1_500))
        order = await the_order(session, "dave")
        unpaid = completed_session(order, payment_intent="pi_d", paid=False)
        assert (await deliver(client, make_event("checkout.session.completed", unpaid))).json()[
            "status"
        ] == "processed"
        assert "usd" not in (await balance(client, "dave")) or (
            (await balance(client, "dave"))["usd"]["available"] == 0
        )
        paid = completed_session(order, payment_intent="pi_d")
        await deliver(client, make_event("checkout.session.async_payment_succeeded", paid))
        assert (await balance(client, "dave"))["usd"]["available"] == 1_500

    @pytest.mark.parametrize(
        ("event_type", "status", "code"),
        [
            ("checkout.session.expired", "expired", "expired"),
            ("checkout.session.async_payment_failed", "failed", "async_payment_failed"),
        ],
    )
    async def test_failure_credits_nothing_and_records_reason(
        self,
        client: httpx.AsyncClient,
        stripe_payins: respx.MockRouter,
        session: AsyncSession,
        event_type: str,
        status: str,
        code: str,
    ) -> None:
        await start_checkout(client, "erin", topup(1_200))
        order = await the_order(session, "erin")
        await deliver(client, make_event(event_type, completed_session(order, paid=False)))
        order = await the_order(session, "erin")
        assert order.status == status
        assert order.failure_code == code
        api = (await client.get(f"/api/v1/orders/ord_{order.id}", headers=auth("erin"))).json()
        assert api["status"] == status
        assert api["failure_code"] == code
        wallet = await balance(client, "erin")
        assert wallet == {}

    @pytest.mark.parametrize(
        ("event_type", "stored_status", "error"),
        [
            # Expired: a session created elsewhere on the account, nothing to expire.
            ("checkout.session.expired", "processed", None),
            # Failed: its order may not be committed yet, so the event is retried.
            ("checkout.session.async_payment_failed", "failed", "RetryLater"),
        ],
    )
    async def test_unpaid_end_of_an_unknown_session(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        event_type: str,
        stored_status: str,
        error: str | None,
    ) -> None:
        unknown = stripe_object("checkout.session")
        unknown.update(id=f"cs_test_{uuid.uuid4().hex}", payment_status="unpaid", metadata={})
        event = make_event(event_type, unknown)
        await deliver(client, event)
        stored = await session.get(WebhookEvent, event["id"], populate_existing=True)
        assert stored is not None
        assert stored.status == stored_status
        if error is None:
            assert stored.last_error is None
        else:
            assert error in (stored.last_error or "")

    async def test_orders_are_private(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        await start_checkout(client, "owner", topup())
        order = await the_order(session, "owner")
        other = await client.get(f"/api/v1/orders/ord_{order.id}", headers=auth("intruder"))
        assert other.status_code == 404
        assert other.json()["code"] == "order_not_found"
        assert (await client.get("/api/v1/orders", headers=auth("intruder"))).json()["data"] == []


class TestCheckoutIdempotency:
    async def test_same_request_twice_one_stripe_object(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        first = await start_checkout(client, "frank", topup(), key="same")
        second = await start_checkout(client, "frank", topup(), key="same")
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert stripe_payins.routes["sessions"].call_count == 1
        assert await order_count(session, "frank") == 1

    async def test_same_key_other_body_is_refused(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        await start_checkout(client, "gina", topup(2_000), key="k")
        reused = await start_checkout(client, "gina", topup(3_000), key="k")
        assert reused.status_code == 422
        assert reused.json()["code"] == "idempotency_key_reused"
        assert await order_count(session, "gina") == 1

    async def test_missing_key(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/checkout/sessions", json=topup(), headers=auth())
        assert response.status_code == 400
        assert response.json()["code"] == "idempotency_key_required"

    @pytest.mark.parametrize(
        "fault",
        [
            httpx.ReadTimeout("slow"),
            httpx.ConnectError("reset"),
            httpx.Response(500, json={"error": {"type": "api_error", "message": "boom"}}),
            httpx.Response(429, json={"error": {"type": "rate_limit_error", "message": "slow"}}),
        ],
        ids=["timeout", "connection-reset", "500", "429"],
    )
    async def test_stripe_fault_then_retry_reaches_one_object(
        self,
        client: httpx.AsyncClient,
        stripe_payins: respx.MockRouter,
        session: AsyncSession,
        fault: Any,
    ) -> None:
        from tests.orders.conftest import checkout_session_response

        route = stripe_payins.routes["sessions"]
        calls = iter([fault])

        def fail_once(request: httpx.Request) -> httpx.Response:
            outcome = next(calls, None)
            if isinstance(outcome, Exception):
                raise outcome
            if isinstance(outcome, httpx.Response):
                return outcome
            return checkout_session_response(request)

        route.side_effect = fail_once
        failed = await start_checkout(client, "hank", topup(), key="retry-me")
        assert failed.status_code == 503, failed.text
        assert failed.headers["content-type"] == "application/problem+json"
        assert failed.json()["code"] == "payment_provider_unavailable"
        assert failed.headers["Retry-After"]
        assert "boom" not in failed.text
        order = await the_order(session, "hank")
        assert order.status == "pending"
        assert order.stripe_checkout_session_id is None

        retried = await start_checkout(client, "hank", topup(), key="retry-me")
        assert retried.status_code == 201, retried.text
        keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
        assert keys == {stripe_key("checkout_session", order.id)}
        # the retry sends exactly the same parameters under the same key (Stripe
        # refuses a key reused with different ones)
        bodies = {call.request.content for call in route.calls}
        assert len(bodies) == 1
        assert await order_count(session, "hank") == 1


class TestCheckoutBadInput:
    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            (topup(999), 422, "amount_out_of_range"),
            (topup(1_000_001), 422, "amount_out_of_range"),
            (topup(9, "jpy"), 422, "amount_out_of_range"),
            (topup(20.5), 422, "validation_error"),
            (topup("2000"), 422, "validation_error"),
            (topup(2_000, "xyz"), 422, "validation_error"),
            (topup(2_000, "USD"), 422, "validation_error"),
            # Stripe's special cases: isk charges in whole krónur, kwd in tens of fils.
            (topup(2_050, "isk"), 422, "amount_not_in_steps"),
            (topup(10_005, "kwd"), 422, "amount_not_in_steps"),
            (topup(success_url="https://evil.example/steal"), 422, "redirect_url_not_allowed"),
            (topup(cancel_url="javascript:alert(1)"), 422, "redirect_url_not_allowed"),
            ({"purpose": "order", "price": "nope", **URLS}, 422, "price_not_found"),
            (
                {"purpose": "escrow", "amount": 2_000, "currency": "usd", **URLS},
                422,
                "escrow_checkout_incomplete",
            ),
            ({"purpose": "gift", **URLS}, 422, "validation_error"),
        ],
    )
    async def test_refused_and_nothing_written(
        self,
        client: httpx.AsyncClient,
        stripe_payins: respx.MockRouter,
        session: AsyncSession,
        body: dict[str, Any],
        status: int,
        code: str,
    ) -> None:
        response = await start_checkout(client, "ivan", body)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        assert response.headers["content-type"] == "application/problem+json"
        assert await order_count(session, "ivan") == 0
        assert stripe_payins.routes["sessions"].call_count == 0
        assert await session.get(User, "ivan") is None


ADMIN = auth("admin-9", ["admin"])


class TestCatalogOrders:
    async def _catalog(self, client: httpx.AsyncClient, **discount: Any) -> None:
        price = await client.post(
            "/api/v1/admin/prices",
            json={
                "lookup_key": "pro-pack",
                "name": "Pro pack",
                "unit_amount": 4_000,
                "currency": "eur",
            },
            headers=ADMIN,
        )
        assert price.status_code == 201, price.text
        if discount:
            created = await client.post(
                "/api/v1/admin/discount-codes", json={"code": "SAVE", **discount}, headers=ADMIN
            )
            assert created.status_code == 201, created.text

    @pytest.mark.parametrize(
        ("path", "body", "code"),
        [
            (
                "/api/v1/admin/prices",
                {"lookup_key": "isk-pack", "name": "Pack", "unit_amount": 4_050, "currency": "isk"},
                "amount_not_in_steps",
            ),
            (
                "/api/v1/admin/discount-codes",
                {"code": "ISK50", "amount_off": 50, "currency": "isk"},
                "amount_not_in_steps",
            ),
            (  # whole krónur: 1.50 kr of credit could never be refunded to a card
                "/api/v1/admin/prices",
                {
                    "lookup_key": "isk-credit",
                    "name": "Pack",
                    "unit_amount": 4_000,
                    "currency": "isk",
                    "grants_credit": 4_150,
                },
                "amount_not_in_steps",
            ),
            (  # three-decimal currencies in tens of fils
                "/api/v1/admin/prices",
                {
                    "lookup_key": "kwd-credit",
                    "name": "Pack",
                    "unit_amount": 5_000,
                    "currency": "kwd",
                    "grants_credit": 6_005,
                },
                "amount_not_in_steps",
            ),
            (  # found by the fuzzing: an INTEGER column's range, not a 500
                "/api/v1/admin/discount-codes",
                {"code": "MANY", "percent_off_bps": 100, "max_redemptions": 2**53},
                "validation_error",
            ),
        ],
        ids=["isk-price", "isk-amount-off", "isk-credit", "kwd-credit", "huge-max-redemptions"],
    )
    async def test_catalog_entries_stripe_would_refuse_are_refused(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        path: str,
        body: dict[str, Any],
        code: str,
    ) -> None:
        before = await catalog_rows(session)
        response = await client.post(path, json=body, headers=ADMIN)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == code
        if "grants_credit" in body:
            step = {"isk": 100, "kwd": 10}[body["currency"]]
            assert (response.json()["field"], response.json()["step"]) == ("grants_credit", step)
        assert await catalog_rows(session) == before

    @pytest.mark.parametrize(
        ("currency", "unit_amount", "grants_credit"),
        [("isk", 4_000, 4_500), ("kwd", 5_000, 6_010), ("usd", 999, 1_001)],
    )
    async def test_credit_on_stripes_steps_is_accepted(
        self, client: httpx.AsyncClient, currency: str, unit_amount: int, grants_credit: int
    ) -> None:
        lookup = f"credit-{currency}-{uuid.uuid4().hex[:8]}"
        response = await client.post(
            "/api/v1/admin/prices",
            json={
                "lookup_key": lookup,
                "name": "Pack",
                "unit_amount": unit_amount,
                "currency": currency,
                "grants_credit": grants_credit,
            },
            headers=ADMIN,
        )
        assert response.status_code == 201, response.text
        assert (response.json()["lookup_key"], response.json()["grants_credit"]) == (
            lookup,
            grants_credit,
        )

    async def test_a_percent_discount_in_isk_keeps_whole_kronur(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        """15% off 40 kr would be 6.00 kr: fine; 15% off 41 kr is 6.15 kr, rounded down to
        6 kr, so the charge is 35 kr, not 34.85 (Stripe refuses fractions of a krona)."""
        price = await client.post(
            "/api/v1/admin/prices",
            json={"lookup_key": "isk-41", "name": "Pack", "unit_amount": 4_100, "currency": "isk"},
            headers=ADMIN,
        )
        assert price.status_code == 201, price.text
        discount = await client.post(
            "/api/v1/admin/discount-codes",
            json={"code": "ISK15", "percent_off_bps": 1_500},
            headers=ADMIN,
        )
        assert discount.status_code == 201, discount.text
        response = await start_checkout(
            client,
            "isk-buyer",
            {"purpose": "order", "price": "isk-41", "discount_code": "ISK15", **URLS},
        )
        assert response.status_code == 201, response.text
        order = await the_order(session, "isk-buyer")
        assert (order.amount, order.discount_amount) == (3_500, 600)

    async def test_price_and_percent_discount_server_side(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        await self._catalog(client, percent_off_bps=2_500)
        response = await start_checkout(
            client,
            "jane",
            {
                "purpose": "order",
                "price": "pro-pack",
                "quantity": 2,
                "discount_code": "SAVE",
                **URLS,
            },
        )
        assert response.status_code == 201, response.text
        order = await the_order(session, "jane")
        assert (order.amount, order.discount_amount, order.currency) == (6_000, 2_000, "eur")
        form = parse_qs(stripe_payins.routes["sessions"].calls.last.request.content.decode())
        assert form["line_items[0][price_data][unit_amount]"] == ["6000"]
        # paid: revenue, not a wallet credit
        await deliver(
            client,
            make_event(
                "checkout.session.completed", completed_session(order, payment_intent="pi_j")
            ),
        )
        assert await balance(client, "jane") == {}
        assert (await the_order(session, "jane")).status == "succeeded"

    @pytest.mark.parametrize(
        "discount",
        [
            {"percent_off_bps": 1000, "valid_until": "2020-01-01T00:00:00Z"},
            {"percent_off_bps": 1000, "valid_from": "2999-01-01T00:00:00Z"},
            {"amount_off": 500, "currency": "usd"},
        ],
        ids=["expired", "not-yet-valid", "other-currency"],
    )
    async def test_unusable_discount(
        self,
        client: httpx.AsyncClient,
        stripe_payins: respx.MockRouter,
        session: AsyncSession,
        discount: dict[str, Any],
    ) -> None:
        await self._catalog(client, **discount)
        response = await start_checkout(
            client,
            "kim",
            {"purpose": "order", "price": "pro-pack", "discount_code": "SAVE", **URLS},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "discount_code_invalid"
        assert await order_count(session, "kim") == 0

    async def test_usage_limit(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        await self._catalog(client, amount_off=500, currency="eur", max_redemptions=1)
        body = {"purpose": "order", "price": "pro-pack", "discount_code": "SAVE", **URLS}
        assert (await start_checkout(client, "lou", body, key="a")).status_code == 201
        used_up = await start_checkout(client, "lou", body, key="b")
        assert used_up.json()["code"] == "discount_code_invalid"
        assert await order_count(session, "lou") == 1


class TestConcurrentFirstPayments:
    async def test_one_customer_per_user(
        self,
        committed_client: httpx.AsyncClient,
        stripe_payins: respx.MockRouter,
        unique_user: str,
    ) -> None:
        responses = await asyncio.gather(
            *(start_checkout(committed_client, unique_user, topup(), key=f"k{i}") for i in range(5))
        )
        assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
        keys = {
            c.request.headers["Idempotency-Key"] for c in stripe_payins.routes["customers"].calls
        }
        assert keys == {stripe_key("customer", unique_user)}
        me = await committed_client.get("/api/v1/me", headers=auth(unique_user))
        assert me.status_code == 200


class TestEscrowCheckout:
    async def test_card_payment_lands_in_escrow_once(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        from tests.factories import create_user

        await create_user(session, id="pete", roles=["payee"])
        body = {
            "purpose": "escrow",
            "payee_id": "pete",
            "amount": 10_000,
            "currency": "usd",
            "reference": "job-7",
            **URLS,
        }
        response = await client.post(
            "/api/v1/checkout/sessions",
            json=body,
            headers={**auth("cora", ["customer"]), "Idempotency-Key": "job-7"},
        )
        assert response.status_code == 201, response.text
        order = await the_order(session, "cora")
        assert (order.purpose, order.amount) == ("escrow", 10_500)  # price + 5% platform fee
        form = parse_qs(stripe_payins.routes["sessions"].calls.last.request.content.decode())
        assert form["line_items[0][price_data][unit_amount]"] == ["10500"]
        escrows = (await client.get("/api/v1/escrows", headers=auth("cora", ["customer"]))).json()[
            "data"
        ]
        assert [e["status"] for e in escrows] == ["awaiting_payment"]

        paid = completed_session(order, payment_intent="pi_job7")
        for event in (
            make_event("checkout.session.completed", paid),
            make_event("payment_intent.succeeded", succeeded_intent(order, "pi_job7")),
        ):
            assert (await deliver(client, event)).status_code == 200
        wallet = await balance(client, "cora")
        assert wallet["usd"]["escrow"] == 10_500
        assert wallet["usd"]["available"] == 0
        escrow = (await client.get("/api/v1/escrows", headers=auth("cora", ["customer"]))).json()[
            "data"
        ][0]
        assert escrow["status"] == "created"
        accepted = await client.post(
            f"/api/v1/escrows/{escrow['id']}/accept",
            headers={**auth("pete", ["payee"]), "Idempotency-Key": "acc"},
        )
        assert accepted.status_code == 200, accepted.text
        assert await ledger_invariants(session) == []
        # Two Stripe events of one payment: the order paid once, the escrow funded once.
        assert [(kind, payload["id"]) for kind, payload in await emitted(session, "cora")] == [
            ("escrow.funded", escrow["id"]),
            ("order.paid", f"ord_{order.id}"),
            ("escrow.accepted", escrow["id"]),
        ]

    async def test_needs_customer_role(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        response = await client.post(
            "/api/v1/checkout/sessions",
            json={
                "purpose": "escrow",
                "payee_id": "pete",
                "amount": 10_000,
                "currency": "usd",
                "reference": "job-8",
                **URLS,
            },
            headers={**auth("paula", ["payee"]), "Idempotency-Key": "job-8"},
        )
        assert response.status_code == 403
        assert await order_count(session, "paula") == 0
