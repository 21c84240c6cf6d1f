"""Spending the wallet: direct payments and catalog orders paid from the available balance
(`POST /api/v1/orders` with `source: "wallet"`), prices that grant wallet credit, and
their refunds through `POST /api/v1/admin/refunds` (back to the wallet, no Stripe call;
credit taken back in proportion, `credit_already_spent`, `force` freezes)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import respx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.orders.models import Order
from payments_api.projects.models import DirectPayment
from payments_api.users.models import User
from tests.factories import create_user, emitted, fund, ledger_invariants
from tests.helpers import auth, make_event
from tests.projects.conftest import (
    Payee,
    create_project,
    enable_payouts,
    ledger_postings,
    new_payee,
)
from tests.refunds.helpers import ADMIN, deliver, form, platform, refund_from_request, wallet

ORDERS = "/api/v1/orders"
REFUNDS = "/api/v1/admin/refunds"


async def customer(session: AsyncSession, funds: int = 0) -> tuple[str, dict[str, str]]:
    user_id = f"cust_{uuid.uuid4().hex[:12]}"
    await create_user(session, id=user_id, roles=["customer"])
    if funds:
        await fund(session, user_id, funds)
    return user_id, auth(user_id, ["customer"])


async def payee_with_project(client: httpx.AsyncClient) -> tuple[Payee, str]:
    payee = new_payee()
    project_id = await create_project(client, payee)
    await enable_payouts(client, payee)
    return payee, project_id


async def pay(
    client: httpx.AsyncClient, headers: dict[str, str], key: str | None = None, **body: Any
) -> httpx.Response:
    return await client.post(
        ORDERS,
        json={"source": "wallet", **body},
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def refund(
    client: httpx.AsyncClient, order_id: str, key: str | None = None, **body: Any
) -> httpx.Response:
    return await client.post(
        REFUNDS,
        json={"order_id": order_id, **body},
        headers={**ADMIN, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def create_price(
    client: httpx.AsyncClient, unit_amount: int, grants_credit: int | None = None
) -> str:
    key = f"p-{uuid.uuid4().hex[:10]}"
    body: dict[str, Any] = {
        "lookup_key": key,
        "name": "Credit pack",
        "unit_amount": unit_amount,
        "currency": "usd",
    }
    if grants_credit is not None:
        body["grants_credit"] = grants_credit
    response = await client.post(
        "/api/v1/admin/prices", json=body, headers={**ADMIN, "Idempotency-Key": key}
    )
    assert response.status_code == 201, response.text
    assert response.json()["grants_credit"] == grants_credit
    return key


async def order_count(session: AsyncSession, user_id: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(Order).where(Order.user_id == user_id)
        )
        or 0
    )


async def is_frozen(session: AsyncSession, user_id: str) -> bool:
    user = await session.scalar(
        select(User).where(User.id == user_id).execution_options(populate_existing=True)
    )
    assert user is not None
    return user.frozen


def number(public: str) -> int:
    return int(public.split("_", 1)[1])


class TestDirectFromWallet:
    async def test_pays_the_payee_and_the_fee_then_refunds_in_proportion(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        payee, project_id = await payee_with_project(client)
        user, headers = await customer(session, 5_000)
        fees_before = await platform(session, AccountKind.platform_fees)
        body = {
            "purpose": "direct",
            "payee_id": payee.id,
            "project_id": project_id,
            "amount": 2_500,
            "currency": "usd",
        }

        response = await pay(client, headers, key="tip-1", **body)

        assert response.status_code == 201, response.text
        order = response.json()
        assert (order["status"], order["source"], order["purpose"], order["amount"]) == (
            "succeeded",
            "wallet",
            "direct",
            2_500,
        )
        # 10% application fee, the card rule: 2.50 to the platform, 22.50 to the payee
        assert sorted(await ledger_postings(session, f"wallet_payment:{number(order['id'])}")) == [
            ("available", -2_500),
            ("available", 2_250),
            ("platform_fees", 250),
        ]
        assert (await wallet(session, user))["available"] == 2_500
        assert (await wallet(session, payee.id))["available"] == 2_250
        row = await session.scalar(
            select(DirectPayment).where(DirectPayment.order_id == number(order["id"]))
        )
        assert row is not None
        assert (row.funding, row.stripe_payment_intent_id, row.net_amount) == (
            "wallet",
            None,
            2_250,
        )
        # the project's figures and the payee's earnings count it (in the wallet)
        earnings = (await client.get("/api/v1/me/earnings", headers=payee.headers)).json()
        assert [(e["amount"], e["payout_status"]) for e in earnings["data"]] == [
            (2_250, "available")
        ]
        assert [t for t, _ in await emitted(session, user)] == ["order.paid"]

        # the same key: the same order, nothing moves again
        again = await pay(client, headers, key="tip-1", **body)
        assert again.status_code == 201
        assert again.json()["id"] == order["id"]
        assert (await wallet(session, user))["available"] == 2_500

        # 3.33 back: fee 33, payee 300 (cumulative largest remainder), into the wallet
        first = await refund(client, order["id"], amount=333)
        assert first.status_code == 201, first.text
        assert (first.json()["status"], first.json()["payee_share"]) == ("succeeded", 300)
        key = f"refund:{number(first.json()['id'])}:wallet"
        assert sorted(await ledger_postings(session, key)) == [
            ("available", -300),
            ("available", 333),
            ("platform_fees", -33),
        ]
        # the rest: fee 217, payee 1,950 -> exactly the payment's split in all
        rest = await refund(client, order["id"])
        assert rest.status_code == 201, rest.text
        assert (rest.json()["amount"], rest.json()["payee_share"]) == (2_167, 1_950)
        assert (await wallet(session, user))["available"] == 5_000
        assert (await wallet(session, payee.id))["available"] == 0
        assert await platform(session, AccountKind.platform_fees) == fees_before
        detail = await client.get(f"/api/v1/orders/{order['id']}", headers=headers)
        assert (detail.json()["status"], detail.json()["refunded_amount"]) == ("refunded", 2_500)
        earnings = (await client.get("/api/v1/me/earnings", headers=payee.headers)).json()
        assert [e["payout_status"] for e in earnings["data"]] == ["reversed"]
        types = [t for t, _ in await emitted(session, user)]
        assert types == [
            "order.paid",
            "refund.succeeded",
            "order.refunded",
            "refund.succeeded",
            "order.refunded",
        ]
        # over-refund: nothing left
        over = await refund(client, order["id"], amount=1)
        assert (over.status_code, over.json()["code"]) == (409, "refund_exceeds_refundable")
        assert await ledger_invariants(session) == []

    async def test_short_balance_writes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        payee, project_id = await payee_with_project(client)
        user, headers = await customer(session, 999)

        response = await pay(
            client,
            headers,
            purpose="direct",
            payee_id=payee.id,
            project_id=project_id,
            amount=1_000,
            currency="usd",
        )

        assert response.status_code == 402, response.text
        assert (response.json()["code"], response.json()["balance"]) == ("insufficient_funds", 999)
        assert await order_count(session, user) == 0
        assert (await wallet(session, user))["available"] == 999
        assert (await wallet(session, payee.id))["available"] == 0
        assert await emitted(session, user) == []

    async def test_frozen_wallet_cannot_spend(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        payee, project_id = await payee_with_project(client)
        user, headers = await customer(session, 5_000)
        freeze = await client.post(
            f"/api/v1/admin/wallets/{user}/freeze",
            json={"reason": "fraud review"},
            headers={**ADMIN, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert freeze.status_code == 200, freeze.text

        response = await pay(
            client,
            headers,
            purpose="direct",
            payee_id=payee.id,
            project_id=project_id,
            amount=1_000,
            currency="usd",
        )

        assert (response.status_code, response.json()["code"]) == (409, "wallet_frozen")
        assert await order_count(session, user) == 0
        assert (await wallet(session, user))["available"] == 5_000

    async def test_limits_are_the_currency_debit_limits(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        payee, project_id = await payee_with_project(client)
        _user, headers = await customer(session, 5_000)
        response = await pay(
            client,
            headers,
            purpose="direct",
            payee_id=payee.id,
            project_id=project_id,
            amount=1_000_001,  # above 10,000.00 usd
            currency="usd",
        )
        assert (response.status_code, response.json()["code"]) == (422, "amount_out_of_range")

    async def test_a_payee_who_withdrew_is_covered_by_the_platform(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        payee, project_id = await payee_with_project(client)
        user, headers = await customer(session, 2_000)
        response = await pay(
            client,
            headers,
            purpose="direct",
            payee_id=payee.id,
            project_id=project_id,
            amount=2_000,
            currency="usd",
        )
        assert response.status_code == 201, response.text
        # the payee's 18.00 leaves their available (a withdrawal in flight)
        await LedgerService(session).post(
            NewTransaction(
                type="withdrawal_hold",
                cause_type=CauseType.withdrawal,
                cause_key=f"test:withdraw:{payee.id}",
                postings=[
                    PostingSpec(AccountRef.user(payee.id, AccountKind.available, "usd"), -1_500),
                    PostingSpec(AccountRef.user(payee.id, AccountKind.withdrawing, "usd"), 1_500),
                ],
            )
        )

        full = await refund(client, response.json()["id"])

        assert full.status_code == 201, full.text
        key = f"refund:{number(full.json()['id'])}:wallet"
        # payee share 1,800: 300 still available, 1,500 covered by the platform
        assert sorted(await ledger_postings(session, key)) == [
            ("adjustments", -1_500),
            ("available", -300),
            ("available", 2_000),
            ("platform_fees", -200),
        ]
        assert (await wallet(session, payee.id))["available"] == 0
        assert (await wallet(session, user))["available"] == 2_000
        assert await ledger_invariants(session) == []


class TestOrdersAndCredit:
    async def test_wallet_order_grants_credit_and_refunds_take_it_back(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        price = await create_price(client, 1_000, grants_credit=1_200)
        user, headers = await customer(session, 3_000)
        sales_before = await platform(session, AccountKind.sales)

        response = await pay(client, headers, purpose="order", price=price, quantity=2)

        assert response.status_code == 201, response.text
        order = response.json()
        assert (order["amount"], order["granted_credit"], order["source"]) == (
            2_000,
            2_400,
            "wallet",
        )
        number_ = number(order["id"])
        assert sorted(await ledger_postings(session, f"wallet_payment:{number_}")) == [
            ("available", -2_000),
            ("sales", 2_000),
        ]
        assert sorted(await ledger_postings(session, f"order:{number_}:credit")) == [
            ("available", 2_400),
            ("sales", -2_400),
        ]
        assert (await wallet(session, user))["available"] == 3_400
        [(kind, payload)] = await emitted(session, user)
        assert (kind, payload["granted_credit"]) == ("order.paid", 2_400)
        history = (await client.get(ORDERS, headers=headers)).json()["data"]
        assert [(o["id"], o["granted_credit"]) for o in history] == [(order["id"], 2_400)]

        # 3.33 of 20.00 refunded: credit back = largest remainder of 24.00 over
        # [3.33, 16.67] -> 399.6 -> 400
        part = await refund(client, order["id"], amount=333)
        assert part.status_code == 201, part.text
        assert (part.json()["credit_taken_back"], part.json()["forced"]) == (400, False)
        rid = number(part.json()["id"])
        assert sorted(await ledger_postings(session, f"refund:{rid}:wallet")) == [
            ("available", 333),
            ("sales", -333),
        ]
        assert sorted(await ledger_postings(session, f"refund:{rid}:credit")) == [
            ("available", -400),
            ("sales", 400),
        ]
        rest = await refund(client, order["id"])
        assert rest.status_code == 201, rest.text
        assert (rest.json()["amount"], rest.json()["credit_taken_back"]) == (1_667, 2_000)
        # everything is as before the purchase
        assert (await wallet(session, user))["available"] == 3_000
        assert await platform(session, AccountKind.sales) == sales_before
        detail = (await client.get(f"/api/v1/orders/{order['id']}", headers=headers)).json()
        assert (detail["status"], detail["credit_taken_back"]) == ("refunded", 2_400)
        assert await ledger_invariants(session) == []

    async def test_spent_credit_is_refused_unless_forced_which_freezes(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        price = await create_price(client, 1_000, grants_credit=5_000)
        user, headers = await customer(session, 1_000)
        order = (await pay(client, headers, purpose="order", price=price)).json()
        assert (await wallet(session, user))["available"] == 5_000
        # the buyer spends 4,500 of the credit
        debit = await client.post(
            f"/api/v1/wallets/{user}/debits",
            json={"amount": 4_500, "currency": "usd", "description": "usage"},
            headers={**auth("backend", ["service"]), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert debit.status_code == 201, debit.text

        refused = await refund(client, order["id"])

        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert (problem["code"], problem["credit_to_take_back"], problem["available"]) == (
            "credit_already_spent",
            5_000,
            500,
        )
        assert (await wallet(session, user))["available"] == 500
        assert not await is_frozen(session, user)

        forced = await refund(client, order["id"], force=True)

        assert forced.status_code == 201, forced.text
        assert (forced.json()["forced"], forced.json()["credit_taken_back"]) == (True, 5_000)
        # 500 + 1,000 refunded - 5,000 credit = -3,500, and the wallet is frozen
        assert (await wallet(session, user))["available"] == -3_500
        assert await is_frozen(session, user)
        frozen_spend = await pay(client, headers, purpose="order", price=price)
        assert (frozen_spend.status_code, frozen_spend.json()["code"]) == (409, "wallet_frozen")
        audit = await session.execute(
            text("SELECT action FROM admin_audit_log WHERE target_id = :u"), {"u": user}
        )
        assert [row.action for row in audit] == ["wallet.freeze"]
        assert await ledger_invariants(session) == []

    async def test_plain_sale_is_revenue(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        price = await create_price(client, 700)
        user, headers = await customer(session, 700)
        before = await platform(session, AccountKind.sales)
        order = (await pay(client, headers, purpose="order", price=price)).json()
        assert order["granted_credit"] == 0
        assert await platform(session, AccountKind.sales) == before + 700
        assert (await wallet(session, user))["available"] == 0
        short = await pay(client, headers, purpose="order", price=price)
        assert (short.status_code, short.json()["code"]) == (402, "insufficient_funds")
        assert await order_count(session, user) == 1


def paid_intent(order: Order, pi: str) -> dict[str, Any]:
    from tests.helpers import stripe_object

    intent = stripe_object("payment_intent")
    intent.update(
        id=pi,
        amount=order.amount,
        amount_received=order.amount,
        currency=order.currency,
        status="succeeded",
        latest_charge=None,
        last_payment_error=None,
        metadata={"order_id": str(order.id), "user_id": order.user_id, "purpose": "order"},
    )
    return intent


class TestCardOrderCredit:
    async def _card_order(
        self, client: httpx.AsyncClient, session: AsyncSession, grants: int
    ) -> tuple[str, Order]:
        from tests.orders.test_checkout import URLS, the_order

        price = await create_price(client, 2_000, grants_credit=grants)
        user, headers = await customer(session)
        started = await client.post(
            "/api/v1/checkout/sessions",
            json={"purpose": "order", "price": price, **URLS},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert started.status_code == 201, started.text
        order = await the_order(session, user)
        pi = f"pi_{uuid.uuid4().hex[:16]}"
        response = await deliver(
            client, make_event("payment_intent.succeeded", paid_intent(order, pi))
        )
        assert response.status_code == 200, response.text
        return user, await the_order(session, user)

    async def test_card_order_credit_is_held_and_taken_back_with_the_refund(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        user, order = await self._card_order(client, session, grants=1_000)
        assert order.granted_credit_amount == 1_000
        assert sorted(await ledger_postings(session, f"order:{order.id}:credit")) == [
            ("available", 1_000),
            ("sales", -1_000),
        ]
        route = stripe_payins.post("/v1/refunds").mock(
            side_effect=lambda request: httpx.Response(
                200, json=refund_from_request(request, status="succeeded", currency="usd")
            )
        )

        response = await refund(client, f"ord_{order.id}", amount=500)

        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["status"], body["credit_taken_back"]) == ("succeeded", 250)
        sent = form(route.calls.last.request)
        assert (sent["payment_intent"], sent["amount"]) == (order.stripe_payment_intent_id, "500")
        assert "reverse_transfer" not in sent
        rid = number(body["id"])
        assert sorted(await ledger_postings(session, f"refund:{rid}:hold")) == [
            ("available", -250),
            ("withdrawing", 250),
        ]
        assert sorted(
            await ledger_postings(session, f"stripe:refund:{body['stripe_refund_id']}")
        ) == [
            ("sales", -250),
            ("stripe_balance", 500),
            ("withdrawing", -250),
        ]
        assert await wallet(session, user) == {"available": 750, "escrow": 0, "withdrawing": 0}
        assert await ledger_invariants(session) == []

    async def test_stripe_refusing_gives_the_credit_back(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        user, order = await self._card_order(client, session, grants=1_000)
        stripe_payins.post("/v1/refunds").mock(
            return_value=httpx.Response(
                400,
                json={"error": {"type": "invalid_request_error", "code": "charge_disputed"}},
            )
        )
        response = await refund(client, f"ord_{order.id}")
        assert (response.status_code, response.json()["code"]) == (409, "refund_rejected")
        assert await wallet(session, user) == {"available": 1_000, "escrow": 0, "withdrawing": 0}
        fresh = await session.scalar(
            select(Order).where(Order.id == order.id).execution_options(populate_existing=True)
        )
        assert fresh is not None
        assert (fresh.credit_taken_back_amount, fresh.refunded_amount) == (0, 0)

    async def test_spent_card_credit_is_refused_and_nothing_is_sent(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        user, order = await self._card_order(client, session, grants=1_000)
        debit = await client.post(
            f"/api/v1/wallets/{user}/debits",
            json={"amount": 900, "currency": "usd", "description": "usage"},
            headers={**auth("backend", ["service"]), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert debit.status_code == 201, debit.text
        route = stripe_payins.post("/v1/refunds").mock(
            side_effect=lambda request: httpx.Response(
                200, json=refund_from_request(request, status="succeeded", currency="usd")
            )
        )
        refused = await refund(client, f"ord_{order.id}")
        assert (refused.status_code, refused.json()["code"]) == (409, "credit_already_spent")
        assert route.call_count == 0

        forced = await refund(client, f"ord_{order.id}", force=True)
        assert forced.status_code == 201, forced.text
        assert route.call_count == 1
        assert await wallet(session, user) == {"available": -900, "escrow": 0, "withdrawing": 0}
        assert await is_frozen(session, user)
        assert await ledger_invariants(session) == []


class TestConcurrentSpends:
    async def test_twenty_concurrent_wallet_orders_take_exactly_what_there_is(
        self, committed_client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        user = f"spend-race-{uuid.uuid4().hex[:8]}"
        async with sessions.begin() as session:
            await create_user(session, id=user, roles=["customer"])
            await fund(session, user, 1_000)
        price = await create_price(committed_client, 100)
        headers = auth(user, ["customer"])
        responses = await asyncio.gather(
            *(pay(committed_client, headers, purpose="order", price=price) for _ in range(20))
        )
        assert sorted(r.status_code for r in responses) == [201] * 10 + [402] * 10
        assert {r.json()["code"] for r in responses if r.status_code == 402} == {
            "insufficient_funds"
        }
        async with sessions() as session:
            assert (await wallet(session, user))["available"] == 0
            assert await order_count(session, user) == 10
            assert len(await emitted(session, user)) == 10
            assert await ledger_invariants(session) == []

    async def test_one_key_sent_five_times_at_once_pays_once(
        self, committed_client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        user = f"spend-key-{uuid.uuid4().hex[:8]}"
        async with sessions.begin() as session:
            await create_user(session, id=user, roles=["customer"])
            await fund(session, user, 1_000)
        price = await create_price(committed_client, 100)
        headers = auth(user, ["customer"])
        responses = await asyncio.gather(
            *(pay(committed_client, headers, "k1", purpose="order", price=price) for _ in range(5))
        )
        # the first pays; twins in flight are told so, later ones get the replay
        assert {r.status_code for r in responses} <= {201, 409}
        paid = {r.json()["id"] for r in responses if r.status_code == 201}
        assert len(paid) == 1
        codes = {r.json()["code"] for r in responses if r.status_code == 409}
        assert codes <= {"idempotency_key_in_use"}
        async with sessions() as session:
            assert (await wallet(session, user))["available"] == 900
            assert await order_count(session, user) == 1
