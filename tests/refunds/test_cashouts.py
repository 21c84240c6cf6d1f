"""Wallet cash-outs through the HTTP API: allocation over the customer's top-up charges,
the ``refunding`` hold, Stripe's answers and events in every order, recovery."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import respx
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.kit.clock import utcnow
from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.service import AccountRef, LedgerService
from payments_api.orders.models import Order
from payments_api.orders.refund_models import Refund, WalletRefund
from payments_api.refunds.service import RefundService
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from payments_api.users.models import User
from tests.factories import emitted, fund, ledger_invariants
from tests.helpers import auth, make_event, stripe_key
from tests.refunds.helpers import (
    cause_count,
    deliver,
    form,
    paid_order,
    platform,
    refund_from_request,
    reload,
    stripe_refund,
)

CASHOUTS = "/api/v1/me/wallet/refunds"
KINDS = (AccountKind.available, AccountKind.refunding, AccountKind.withdrawing)


async def balances(session: AsyncSession, user_id: str, currency: str = "usd") -> dict[str, int]:
    ledger = LedgerService(session)
    return {
        kind.value: await ledger.balance_of(AccountRef.user(user_id, kind, currency))
        for kind in KINDS
    }


async def postings_of(session: AsyncSession, cause_key: str) -> list[tuple[str, str | None, int]]:
    """(kind, owner, amount) of the postings of one ledger transaction, by kind."""
    result = await session.execute(
        text(
            "SELECT a.kind, a.owner_user_id, p.amount FROM ledger_postings p"
            " JOIN ledger_accounts a ON a.id = p.account_id"
            " JOIN ledger_transactions t ON t.id = p.transaction_id"
            " WHERE t.cause_key = :key ORDER BY a.kind, p.amount"
        ),
        {"key": cause_key},
    )
    return [(row.kind, row.owner_user_id, row.amount) for row in result]


async def two_topups(
    client: httpx.AsyncClient, session: AsyncSession, *, older: int = 2_000, newer: int = 1_500
) -> tuple[str, Order, Order]:
    """A customer with an older and a newer confirmed top-up (paid a day apart)."""
    user_id = f"cust_{uuid.uuid4().hex[:10]}"
    first = await paid_order(client, session, user_id=user_id, amount=older)
    second = await paid_order(client, session, user_id=user_id, amount=newer)
    await session.execute(
        update(Order).where(Order.id == first.id).values(succeeded_at=utcnow() - timedelta(days=1))
    )
    return user_id, await reload(session, first), await reload(session, second)


def answering(
    mock: respx.MockRouter, *, status: str = "succeeded", currency: str = "usd"
) -> respx.Route:
    return mock.post("/v1/refunds", name="refunds").mock(
        side_effect=lambda request: httpx.Response(
            200, json=refund_from_request(request, status=status, currency=currency)
        )
    )


async def cash_out(
    client: httpx.AsyncClient, user_id: str, amount: int, key: str | None = None, **extra: Any
) -> httpx.Response:
    return await client.post(
        CASHOUTS,
        json={"amount": amount, "currency": "usd", **extra},
        headers={**auth(user_id), "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def parts(session: AsyncSession, user_id: str) -> list[Refund]:
    rows = await session.scalars(
        select(Refund)
        .where(Refund.user_id == user_id, Refund.origin == "wallet")
        .order_by(Refund.id)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def cashout_count(session: AsyncSession, user_id: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(WalletRefund).where(WalletRefund.user_id == user_id)
        )
        or 0
    )


def event_for(part: dict[str, Any], order: Order, *, status: str, **extra: Any) -> dict[str, Any]:
    return stripe_refund(
        refund_id=part["stripe_refund_id"],
        amount=part["amount"],
        payment_intent=str(order.stripe_payment_intent_id),
        status=status,
        metadata={"refund_id": part["refund_id"].removeprefix("rfd_")},
        **extra,
    )


class TestCashOut:
    async def test_partial_over_two_charges_newest_first_held_until_stripe_confirms(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        route = answering(stripe_mock, status="pending")
        user_id, older, newer = await two_topups(client, session)
        stripe_before = await platform(session, AccountKind.stripe_balance)

        response = await cash_out(client, user_id, 2_500)

        assert response.status_code == 201, response.text
        body = response.json()
        first, second = await parts(session, user_id)
        assert body["status"] == "pending"
        assert (body["amount"], body["refunding_amount"], body["refunded_amount"]) == (
            2_500,
            2_500,
            0,
        )
        # Newest charge first, each only up to what it can take back.
        assert [(p["topup_id"], p["amount"]) for p in body["refunds"]] == [
            (f"ord_{newer.id}", 1_500),
            (f"ord_{older.id}", 1_000),
        ]
        sent = [call.request for call in route.calls]
        assert [r.url.path for r in sent] == ["/v1/refunds", "/v1/refunds"]
        assert [r.headers["Idempotency-Key"] for r in sent] == [
            stripe_key("refund", first.id),
            stripe_key("refund", second.id),
        ]
        assert [form(r) for r in sent] == [
            {
                "payment_intent": str(newer.stripe_payment_intent_id),
                "amount": "1500",
                "reason": "requested_by_customer",
                "metadata[refund_id]": str(first.id),
                "metadata[order_id]": str(newer.id),
            },
            {
                "payment_intent": str(older.stripe_payment_intent_id),
                "amount": "1000",
                "reason": "requested_by_customer",
                "metadata[refund_id]": str(second.id),
                "metadata[order_id]": str(older.id),
            },
        ]
        assert all("Stripe-Account" not in r.headers for r in sent)
        # Out of available at once, into refunding: one balanced hold.
        assert await balances(session, user_id) == {
            "available": 1_000,
            "refunding": 2_500,
            "withdrawing": 0,
        }
        wrf = body["id"].removeprefix("wrf_")
        assert await postings_of(session, f"wallet_refund:{wrf}:hold") == [
            ("available", user_id, -2_500),
            ("refunding", user_id, 2_500),
        ]
        shown = await client.get("/api/v1/me/balance", headers=auth(user_id))
        [usd] = shown.json()["balances"]
        assert (usd["available"], usd["refunding"]) == (1_000, 2_500)

        # Stripe confirms each refund by its webhook: each part settles once.
        for part, order in zip(body["refunds"], (newer, older), strict=True):
            event = make_event("refund.updated", event_for(part, order, status="succeeded"))
            assert (await deliver(client, event)).json()["status"] == "processed"
        assert await balances(session, user_id) == {
            "available": 1_000,
            "refunding": 0,
            "withdrawing": 0,
        }
        assert await postings_of(session, f"stripe:refund:{first.stripe_refund_id}") == [
            ("refunding", user_id, -1_500),
            ("stripe_balance", None, 1_500),
        ]
        assert await platform(session, AccountKind.stripe_balance) == stripe_before + 2_500
        newer, older = await reload(session, newer), await reload(session, older)
        assert (newer.status, newer.refunded_amount) == ("refunded", 1_500)
        assert (older.status, older.refunded_amount) == ("partially_refunded", 1_000)
        got = (await client.get(f"{CASHOUTS}/{body['id']}", headers=auth(user_id))).json()
        assert (got["status"], got["refunded_amount"], got["refunding_amount"]) == (
            "succeeded",
            2_500,
            0,
        )
        assert [p["stripe_refund_id"] for p in got["refunds"]] == [
            first.stripe_refund_id,
            second.stripe_refund_id,
        ]
        kinds = [kind for kind, _ in await emitted(session, user_id) if "refund" in kind]
        assert kinds == [
            "wallet_refund.created",
            "refund.succeeded",
            "order.refunded",
            "refund.succeeded",
            "order.refunded",
            "wallet_refund.succeeded",
        ]
        assert await ledger_invariants(session) == []

    async def test_full_cash_out_answered_succeeded_settles_at_once(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        route = answering(stripe_mock)
        user_id, older, newer = await two_topups(client, session)

        response = await cash_out(client, user_id, 3_500, key="all-of-it")
        again = await cash_out(client, user_id, 3_500, key="all-of-it")

        assert response.status_code == again.status_code == 201, response.text
        assert again.json()["id"] == response.json()["id"]
        assert route.call_count == 2  # one per charge, the replay calls nobody
        assert response.json()["status"] == "succeeded"
        assert await balances(session, user_id) == {
            "available": 0,
            "refunding": 0,
            "withdrawing": 0,
        }
        first, second = await parts(session, user_id)
        assert (first.order_id, first.amount, second.order_id, second.amount) == (
            newer.id,
            1_500,
            older.id,
            2_000,
        )
        for part in (first, second):
            assert await cause_count(session, f"stripe:refund:{part.stripe_refund_id}") == 1
        # Stripe's events for the same refunds afterwards change nothing.
        for part, order in ((first, newer), (second, older)):
            refunded = stripe_refund(
                refund_id=str(part.stripe_refund_id),
                amount=part.amount,
                payment_intent=str(order.stripe_payment_intent_id),
            )
            assert (
                await deliver(client, make_event("refund.updated", refunded))
            ).status_code == 200
        assert await balances(session, user_id) == {
            "available": 0,
            "refunding": 0,
            "withdrawing": 0,
        }
        listed = (await client.get(CASHOUTS, headers=auth(user_id))).json()
        assert [c["id"] for c in listed["data"]] == [response.json()["id"]]
        assert await ledger_invariants(session) == []

    async def test_more_than_available_or_refundable_is_refused_and_writes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        route = answering(stripe_mock)
        user_id, _older, _newer = await two_topups(client, session)

        short = await cash_out(client, user_id, 3_501)
        assert (short.status_code, short.json()["code"]) == (402, "insufficient_funds")

        # Credit that no card paid (an adjustment): spendable, not refundable to a card.
        await fund(session, user_id, 1_000)
        over = await cash_out(client, user_id, 4_000)
        assert (over.status_code, over.json()["code"]) == (409, "refund_exceeds_refundable")
        assert (over.json()["refundable"], over.json()["requested"]) == (3_500, 4_000)

        # Limits per currency: below the smallest cash-out.
        tiny = await cash_out(client, user_id, 0)
        assert tiny.status_code == 422

        stranger = f"cust_{uuid.uuid4().hex[:10]}"
        session.add(User(id=stranger, roles=["customer"]))
        await session.flush()
        await fund(session, stranger, 500)
        nothing = await cash_out(client, stranger, 500)
        assert (nothing.status_code, nothing.json()["code"]) == (409, "nothing_refundable")

        assert route.call_count == 0
        assert await cashout_count(session, user_id) == 0
        assert await balances(session, user_id) == {
            "available": 4_500,
            "refunding": 0,
            "withdrawing": 0,
        }

    async def test_amount_above_the_currency_limit_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        user_id, _older, _newer = await two_topups(client, session)
        response = await cash_out(client, user_id, 1_000_001)
        assert (response.status_code, response.json()["code"]) == (422, "amount_out_of_range")
        assert response.json()["maximum"] == 1_000_000

    async def test_charge_outside_the_refund_window_is_skipped(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_mock: respx.MockRouter,
        settings: Settings,
    ) -> None:
        route = answering(stripe_mock)
        user_id, older, newer = await two_topups(client, session)
        days = settings.wallet_refund_window_days
        await session.execute(
            update(Order)
            .where(Order.id == older.id)
            .values(succeeded_at=utcnow() - timedelta(days=days + 1))
        )

        over = await cash_out(client, user_id, 1_600)
        assert (over.status_code, over.json()["code"]) == (409, "refund_exceeds_refundable")
        assert over.json()["refundable"] == 1_500

        response = await cash_out(client, user_id, 1_500)
        assert response.status_code == 201, response.text
        assert [p["topup_id"] for p in response.json()["refunds"]] == [f"ord_{newer.id}"]
        assert form(route.calls.last.request)["payment_intent"] == newer.stripe_payment_intent_id
        assert route.call_count == 1
        assert (await balances(session, user_id))["available"] == 2_000

    async def test_frozen_wallet_cannot_cash_out(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        route = answering(stripe_mock)
        user_id, _older, _newer = await two_topups(client, session)
        await session.execute(update(User).where(User.id == user_id).values(frozen=True))

        response = await cash_out(client, user_id, 1_000)

        assert (response.status_code, response.json()["code"]) == (409, "wallet_frozen")
        assert route.call_count == 0
        assert await cashout_count(session, user_id) == 0

    async def test_failed_refund_returns_its_part_to_available(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        answering(stripe_mock, status="pending")
        user_id, older, newer = await two_topups(client, session)
        body = (await cash_out(client, user_id, 2_500)).json()
        newest, oldest = body["refunds"]

        ok = make_event("refund.updated", event_for(newest, newer, status="succeeded"))
        failure = event_for(
            oldest, older, status="failed", failure_reason="expired_or_canceled_card"
        )
        # refund.failed, then refund.updated with the same state: the second changes nothing.
        failed = make_event("refund.failed", failure)
        updated = make_event("refund.updated", failure)
        for event in (ok, failed, updated):
            assert (await deliver(client, event)).json()["status"] == "processed"

        assert await balances(session, user_id) == {
            "available": 2_000,
            "refunding": 0,
            "withdrawing": 0,
        }
        part_id = oldest["refund_id"].removeprefix("rfd_")
        assert await postings_of(session, f"refund:{part_id}:release") == [
            ("available", user_id, 1_000),
            ("refunding", user_id, -1_000),
        ]
        got = (await client.get(f"{CASHOUTS}/{body['id']}", headers=auth(user_id))).json()
        assert (got["status"], got["refunded_amount"], got["failed_amount"]) == (
            "partially_failed",
            1_500,
            1_000,
        )
        assert got["refunds"][1]["failure_reason"] == "expired_or_canceled_card"
        cashout_events = [
            (kind, payload["status"])
            for kind, payload in await emitted(session, user_id)
            if kind.startswith("wallet_refund.")
        ]
        assert cashout_events == [
            ("wallet_refund.created", "pending"),
            ("wallet_refund.failed", "partially_failed"),
        ]
        assert (await reload(session, older)).refunded_amount == 0
        assert await ledger_invariants(session) == []

    async def test_refund_failing_after_success_gives_the_money_back(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        answering(stripe_mock)
        user_id, _older, newer = await two_topups(client, session)
        body = (await cash_out(client, user_id, 1_500)).json()
        assert body["status"] == "succeeded"

        [part] = body["refunds"]
        failed = make_event("refund.failed", event_for(part, newer, status="failed"))
        assert (await deliver(client, failed)).json()["status"] == "processed"

        assert await balances(session, user_id) == {
            "available": 3_500,
            "refunding": 0,
            "withdrawing": 0,
        }
        got = (await client.get(f"{CASHOUTS}/{body['id']}", headers=auth(user_id))).json()
        assert (got["status"], got["failed_amount"]) == ("failed", 1_500)
        assert await ledger_invariants(session) == []


class TestStripeAnswers:
    async def test_webhook_before_the_api_response_applies_once(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        user_id, _older, _newer = await two_topups(client, session)
        deliveries: list[httpx.Response] = []

        async def stripe_refunds_then_emits_its_event(request: httpx.Request) -> httpx.Response:
            created = refund_from_request(request, status="succeeded", currency="usd")
            # Stripe's webhook reaches us while our API call still waits for the answer.
            deliveries.append(await deliver(client, make_event("refund.updated", created)))
            return httpx.Response(200, json=created)

        stripe_mock.post("/v1/refunds").mock(side_effect=stripe_refunds_then_emits_its_event)

        response = await cash_out(client, user_id, 2_000)

        assert response.status_code == 201, response.text
        assert [d.json()["status"] for d in deliveries] == ["processed", "processed"]
        assert response.json()["status"] == "succeeded"
        for part in await parts(session, user_id):
            assert part.status == "succeeded"
            assert await cause_count(session, f"stripe:refund:{part.stripe_refund_id}") == 1
        assert await balances(session, user_id) == {
            "available": 1_500,
            "refunding": 0,
            "withdrawing": 0,
        }
        assert await ledger_invariants(session) == []

    async def test_webhook_after_the_api_response_settles_the_pending_parts(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        answering(stripe_mock, status="pending")
        user_id, older, newer = await two_topups(client, session)
        body = (await cash_out(client, user_id, 3_000)).json()
        assert await balances(session, user_id) == {
            "available": 500,
            "refunding": 3_000,
            "withdrawing": 0,
        }

        # charge.refunded (the refunds embedded) settles the newer charge's part.
        newest, oldest = body["refunds"]
        charge_event = {
            "id": f"ch_{newer.id}",
            "object": "charge",
            "amount": newer.amount,
            "amount_refunded": 1_500,
            "currency": "usd",
            "payment_intent": newer.stripe_payment_intent_id,
            "refunded": True,
            "refunds": {
                "object": "list",
                "data": [event_for(newest, newer, status="succeeded")],
                "has_more": False,
            },
        }
        assert (
            await deliver(client, make_event("charge.refunded", charge_event))
        ).status_code == 200
        assert await balances(session, user_id) == {
            "available": 500,
            "refunding": 1_500,
            "withdrawing": 0,
        }
        got = (await client.get(f"{CASHOUTS}/{body['id']}", headers=auth(user_id))).json()
        assert (got["status"], got["refunded_amount"], got["refunding_amount"]) == (
            "pending",
            1_500,
            1_500,
        )
        event = make_event("refund.updated", event_for(oldest, older, status="succeeded"))
        assert (await deliver(client, event)).json()["status"] == "processed"
        got = (await client.get(f"{CASHOUTS}/{body['id']}", headers=auth(user_id))).json()
        assert (got["status"], got["refunded_amount"]) == ("succeeded", 3_000)
        assert await balances(session, user_id) == {
            "available": 500,
            "refunding": 0,
            "withdrawing": 0,
        }
        assert await ledger_invariants(session) == []

    async def test_stripe_down_then_recovery_with_the_same_keys(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_mock: respx.MockRouter,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        down = stripe_mock.post("/v1/refunds").mock(return_value=httpx.Response(500, json={}))
        user_id, older, newer = await two_topups(client, session)

        response = await cash_out(client, user_id, 2_000)

        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        assert [p["stripe_refund_id"] for p in response.json()["refunds"]] == [None, None]
        assert await balances(session, user_id) == {
            "available": 1_500,
            "refunding": 2_000,
            "withdrawing": 0,
        }
        first_keys = [call.request.headers["Idempotency-Key"] for call in down.calls]

        down.mock(
            side_effect=lambda request: httpx.Response(
                200, json=refund_from_request(request, status="succeeded", currency="usd")
            )
        )
        listing = stripe_mock.get("/v1/refunds").mock(
            return_value=httpx.Response(
                200, json={"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"}
            )
        )
        recovered = await RefundService(
            sessionmaker, gateway, settings, now=lambda: utcnow() + timedelta(hours=1)
        ).recover()

        assert recovered >= 2
        first, second = await parts(session, user_id)
        assert (first.status, second.status) == ("succeeded", "succeeded")
        assert first_keys == [stripe_key("refund", first.id), stripe_key("refund", second.id)]
        retry_keys = [call.request.headers["Idempotency-Key"] for call in down.calls][2:]
        assert sorted(retry_keys) == sorted(first_keys)  # the retries reused the keys
        assert {c.request.url.params["payment_intent"] for c in listing.calls} == {
            newer.stripe_payment_intent_id,
            older.stripe_payment_intent_id,
        }
        assert await balances(session, user_id) == {
            "available": 1_500,
            "refunding": 0,
            "withdrawing": 0,
        }
        got = await client.get(f"{CASHOUTS}/{response.json()['id']}", headers=auth(user_id))
        assert got.json()["status"] == "succeeded"
        assert await ledger_invariants(session) == []

    async def test_stripe_refusing_a_part_gives_it_back(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_mock.post("/v1/refunds").mock(
            return_value=httpx.Response(
                400,
                json={
                    "error": {
                        "type": "invalid_request_error",
                        "code": "charge_disputed",
                        "message": "Charge ch_x has been charged back.",
                    }
                },
            )
        )
        user_id, _older, _newer = await two_topups(client, session)

        response = await cash_out(client, user_id, 1_000)

        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["status"], body["failed_amount"]) == ("failed", 1_000)
        assert body["refunds"][0]["failure_reason"] == "provider_rejected"
        assert "ch_x" not in response.text
        assert await balances(session, user_id) == {
            "available": 3_500,
            "refunding": 0,
            "withdrawing": 0,
        }


class TestReads:
    async def test_list_pages_with_a_cursor_and_hides_other_customers(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        answering(stripe_mock)
        user_id, _older, _newer = await two_topups(client, session)
        ids = [(await cash_out(client, user_id, 500)).json()["id"] for _ in range(3)]

        page = (await client.get(f"{CASHOUTS}?limit=2", headers=auth(user_id))).json()
        assert [c["id"] for c in page["data"]] == ids[::-1][:2]
        assert page["has_more"] is True
        rest = (
            await client.get(
                f"{CASHOUTS}?limit=2&starting_after={page['data'][-1]['id']}",
                headers=auth(user_id),
            )
        ).json()
        assert ([c["id"] for c in rest["data"]], rest["has_more"]) == ([ids[0]], False)

        other = auth("someone_else")
        assert (await client.get(f"{CASHOUTS}/{ids[0]}", headers=other)).status_code == 404
        assert (await client.get(CASHOUTS, headers=other)).json()["data"] == []
        assert (await client.get(f"{CASHOUTS}/nope", headers=auth(user_id))).status_code == 404
