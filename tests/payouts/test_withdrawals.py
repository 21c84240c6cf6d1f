"""Withdrawals: at most one Stripe Transfer per request, money always paid or back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.auth import Principal
from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.service import AccountRef, LedgerService
from payments_api.payout_accounts.models import PayoutAccount
from payments_api.payouts.models import Payout, Withdrawal
from payments_api.payouts.schemas import WithdrawalCreate
from payments_api.payouts.service import PayoutService
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from tests.conftest import TEST_CONNECT_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET
from tests.factories import create_user, emitted, fund, ledger_invariants
from tests.helpers import auth, make_event, signed_webhook, stripe_key, stripe_object

PAYEE = ["payee"]
ACCOUNT = "acct_1PgafTB7WZ01zgkW"


async def enabled_payee(
    session: AsyncSession, user_id: str, amount: int = 50_000, account: str = ACCOUNT
) -> None:
    await create_user(session, id=user_id, roles=PAYEE)
    session.add(
        PayoutAccount(
            user_id=user_id,
            stripe_account_id=account,
            status="enabled",
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
            requirements_currently_due=[],
            requirements_past_due=[],
            requirements_pending_verification=[],
        )
    )
    await session.flush()
    if amount:
        await fund(session, user_id, amount)


def transfer_response(request: httpx.Request) -> httpx.Response:
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    transfer = stripe_object("transfer")
    key = request.headers["Idempotency-Key"]
    transfer.update(
        id=f"tr_{key.replace(':', '_')}",
        amount=int(form["amount"]),
        currency=form["currency"],
        destination=form["destination"],
        metadata={k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
    )
    return httpx.Response(200, json=transfer)


def faulty_then_ok(*faults: Any) -> Callable[[httpx.Request], httpx.Response]:
    pending = list(faults)

    def respond(request: httpx.Request) -> httpx.Response:
        if pending:
            fault = pending.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault  # type: ignore[no-any-return]
        return transfer_response(request)

    return respond


async def withdraw(
    client: httpx.AsyncClient, user: str, amount: int = 10_000, key: str = "w-1"
) -> httpx.Response:
    return await client.post(
        "/api/v1/me/payouts",
        json={"amount": amount, "currency": "usd"},
        headers={**auth(user, PAYEE), "Idempotency-Key": key},
    )


async def balances(session: AsyncSession, user: str) -> tuple[int, int]:
    ledger = LedgerService(session)
    return (
        await ledger.balance_of(AccountRef.user(user, AccountKind.available, "usd")),
        await ledger.balance_of(AccountRef.user(user, AccountKind.withdrawing, "usd")),
    )


def transfer_keys(mock: respx.MockRouter) -> set[str]:
    return {c.request.headers["Idempotency-Key"] for c in mock.routes["transfers"].calls}


@pytest.fixture
def transfers(stripe_mock: respx.MockRouter) -> respx.MockRouter:
    stripe_mock.post("/v1/transfers", name="transfers").mock(side_effect=transfer_response)
    return stripe_mock


def later(settings: Settings, sessionmaker: Any, gateway: StripeGateway) -> PayoutService:
    """The service as the recovery job sees it, an hour later (all retries due)."""
    return PayoutService(
        sessionmaker, gateway, settings, now=lambda: datetime.now(UTC) + timedelta(hours=1)
    )


class TestWithdrawals:
    async def test_transfer_made_once_with_our_key(
        self, client: httpx.AsyncClient, session: AsyncSession, transfers: respx.MockRouter
    ) -> None:
        await enabled_payee(session, "pia")
        response = await withdraw(client, "pia")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "transferred"
        number = int(body["id"].removeprefix("wd_"))
        call = transfers.routes["transfers"].calls.last.request
        assert call.headers["Idempotency-Key"] == stripe_key("withdrawal", number)
        form = {k: v[0] for k, v in parse_qs(call.content.decode()).items()}
        assert form["amount"] == "10000"
        assert form["currency"] == "usd"
        assert form["destination"] == ACCOUNT
        assert form["metadata[withdrawal_id]"] == str(number)
        assert await balances(session, "pia") == (40_000, 0)
        replay = await withdraw(client, "pia")
        assert replay.json() == body
        assert transfers.routes["transfers"].call_count == 1
        assert await ledger_invariants(session) == []
        events = await emitted(session, "pia")
        assert [(kind, payload["status"]) for kind, payload in events] == [
            ("withdrawal.created", "pending"),
            ("withdrawal.paid", "transferred"),
        ]
        # The event carries the resource; the answer adds the balance after it.
        assert events[1][1] == {k: v for k, v in body.items() if k != "available_after"}
        assert body["available_after"] == 40_000
        # No payout schedule seen yet: the documented default delay (2 days).
        expected = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()
        assert body["expected_arrival_date"] == expected

    async def test_refused_transfer_returns_the_money(
        self, client: httpx.AsyncClient, session: AsyncSession, transfers: respx.MockRouter
    ) -> None:
        await enabled_payee(session, "quinn")
        transfers.routes["transfers"].side_effect = None
        transfers.routes["transfers"].return_value = httpx.Response(
            400,
            json={
                "error": {
                    "type": "invalid_request_error",
                    "code": "balance_insufficient",
                    "message": "Insufficient funds in Stripe account.",
                }
            },
        )
        response = await withdraw(client, "quinn")
        assert response.status_code == 201
        assert response.json()["status"] == "failed"
        assert response.json()["failure_code"] == "transfer_refused"
        assert "Insufficient funds" not in response.text
        assert await balances(session, "quinn") == (50_000, 0)
        assert [kind for kind, _ in await emitted(session, "quinn")] == [
            "withdrawal.created",
            "withdrawal.failed",
        ]

    @pytest.mark.parametrize(
        "fault",
        [
            httpx.ReadTimeout("slow"),
            httpx.Response(500, json={"error": {"type": "api_error"}}),
            httpx.Response(429, json={"error": {"type": "rate_limit_error"}}),
            # A card-type error on a transfer: the client was told 402 card_declined
            # (and the key replayed it) while recovery later transferred anyway.
            httpx.Response(402, json={"error": {"type": "card_error", "code": "card_declined"}}),
        ],
        ids=["timeout", "500", "429", "card_error"],
    )
    async def test_unknown_outcome_is_recovered_with_the_same_key(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        transfers: respx.MockRouter,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        fault: Any,
    ) -> None:
        await enabled_payee(session, "rene")
        transfers.routes["transfers"].side_effect = faulty_then_ok(fault)
        response = await withdraw(client, "rene")
        assert response.status_code == 202
        assert response.json()["status"] == "pending"
        assert await balances(session, "rene") == (40_000, 10_000)
        assert await later(settings, sessionmaker, gateway).recover() == 1
        withdrawal = await session.get(
            Withdrawal, int(response.json()["id"][3:]), populate_existing=True
        )
        assert withdrawal is not None
        assert withdrawal.status == "transferred"
        assert transfer_keys(transfers) == {stripe_key("withdrawal", withdrawal.id)}
        assert await balances(session, "rene") == (40_000, 0)
        # nothing left to recover
        assert await later(settings, sessionmaker, gateway).recover() == 0

    async def test_crash_between_commit_and_stripe_call(
        self,
        session: AsyncSession,
        transfers: respx.MockRouter,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
    ) -> None:
        await enabled_payee(session, "sam")
        service = PayoutService(sessionmaker, gateway, settings)
        principal = Principal(sub="sam", roles=frozenset(PAYEE), email=None)
        # Step 1 commits, then the process "dies" before calling Stripe.
        reserved = await service.reserve(
            principal, WithdrawalCreate(amount=10_000, currency="usd"), "crash-key"
        )
        assert transfers.routes["transfers"].call_count == 0
        assert await balances(session, "sam") == (40_000, 10_000)
        assert await later(settings, sessionmaker, gateway).recover() == 1
        assert transfer_keys(transfers) == {stripe_key("withdrawal", reserved.id)}
        assert await balances(session, "sam") == (40_000, 0)
        assert await ledger_invariants(session) == []

    async def test_transfer_events_settle_and_reverse(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        transfers: respx.MockRouter,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
    ) -> None:
        await enabled_payee(session, "tia")
        transfers.routes["transfers"].side_effect = faulty_then_ok(httpx.ReadTimeout("lost"))
        response = await withdraw(client, "tia")
        number = int(response.json()["id"][3:])
        # Stripe did make it: its event arrives before our retry
        transfer = stripe_object("transfer")
        transfer.update(
            id="tr_tia", amount=10_000, currency="usd", metadata={"withdrawal_id": str(number)}
        )
        body, headers = signed_webhook(
            make_event("transfer.created", transfer), TEST_WEBHOOK_SECRET
        )
        ack = await client.post("/api/v1/webhooks/stripe", content=body, headers=headers)
        assert ack.json()["status"] == "processed"
        assert await balances(session, "tia") == (40_000, 0)
        assert await later(settings, sessionmaker, gateway).recover() == 0
        assert transfers.routes["transfers"].call_count == 1

        transfer.update(amount_reversed=10_000, reversed=True)
        body, headers = signed_webhook(
            make_event("transfer.reversed", transfer), TEST_WEBHOOK_SECRET
        )
        for _ in range(2):
            await client.post("/api/v1/webhooks/stripe", content=body, headers=headers)
        assert await balances(session, "tia") == (50_000, 0)
        transfers.get("/v1/payouts").mock(
            return_value=httpx.Response(200, json={"object": "list", "data": [], "has_more": False})
        )
        listing = await client.get("/api/v1/me/payouts", headers=auth("tia", PAYEE))
        assert listing.status_code == 200, listing.text
        assert listing.json()["withdrawals"][0]["status"] == "reversed"
        assert await ledger_invariants(session) == []


class TestWithdrawalRules:
    @pytest.mark.parametrize(
        ("setup", "amount", "status", "code"),
        [
            ("frozen", 10_000, 409, "wallet_frozen"),
            ("no-account", 10_000, 409, "payout_account_not_ready"),
            ("pending-account", 10_000, 409, "payout_account_not_ready"),
            ("ok", 999, 422, "amount_out_of_range"),
            ("ok", 60_000, 402, "insufficient_funds"),
        ],
    )
    async def test_refused_and_nothing_moves(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        transfers: respx.MockRouter,
        setup: str,
        amount: int,
        status: int,
        code: str,
    ) -> None:
        user = f"rule_{setup}"
        if setup == "no-account":
            await create_user(session, id=user, roles=PAYEE)
            await fund(session, user, 50_000)
        else:
            await enabled_payee(session, user)
        if setup == "frozen":
            await client.post(
                f"/api/v1/admin/wallets/{user}/freeze",
                json={"reason": "dispute"},
                headers=auth("ops", ["admin"]),
            )
        if setup == "pending-account":
            account = await session.get(PayoutAccount, (await _account_id(session, user)))
            assert account is not None
            account.status, account.payouts_enabled = "pending", False
            await session.flush()
        response = await withdraw(client, user, amount)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        assert await balances(session, user) == (50_000, 0)
        assert transfers.routes["transfers"].call_count == 0

    @pytest.mark.parametrize("currency", ["huf", "twd", "isk"])
    async def test_payout_currencies_withdraw_whole_units(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        transfers: respx.MockRouter,
        currency: str,
    ) -> None:
        """Stripe pays huf, twd and isk out in whole units only: a withdrawal with a
        fraction is refused before anything is held or sent."""
        user = f"steps_{currency}"
        await enabled_payee(session, user, amount=0)
        await fund(session, user, 50_000, currency)
        response = await client.post(
            "/api/v1/me/payouts",
            json={"amount": 10_050, "currency": currency},
            headers={**auth(user, PAYEE), "Idempotency-Key": "steps"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "amount_not_in_steps"
        assert response.json()["step"] == 100
        ledger = LedgerService(session)
        available = AccountRef.user(user, AccountKind.available, currency)
        assert await ledger.balance_of(available) == 50_000
        withdrawing = AccountRef.user(user, AccountKind.withdrawing, currency)
        assert await ledger.balance_of(withdrawing) == 0
        assert transfers.routes["transfers"].call_count == 0

    async def test_needs_payee_role(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/me/payouts",
            json={"amount": 10_000, "currency": "usd"},
            headers={**auth("cust", ["customer"]), "Idempotency-Key": "x"},
        )
        assert response.status_code == 403
        assert (await client.get("/api/v1/me/payouts", headers=auth("cust"))).status_code == 403

    async def test_twenty_concurrent_withdrawals_only_what_fits(
        self, committed_client: httpx.AsyncClient, engine: AsyncEngine, transfers: respx.MockRouter
    ) -> None:
        user = f"conc_{uuid.uuid4().hex[:8]}"
        async with async_sessionmaker(engine).begin() as session:
            await enabled_payee(session, user, 5_000, account=f"acct_{user}")
        responses = await asyncio.gather(
            *(withdraw(committed_client, user, 1_000, key=f"k{i}") for i in range(20))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(201) == 5, [r.text for r in responses]
        assert statuses.count(402) == 15
        assert all(
            r.json()["code"] == "insufficient_funds" for r in responses if r.status_code == 402
        )
        async with async_sessionmaker(engine)() as session:
            assert await balances(session, user) == (0, 0)
        # One transfer per accepted withdrawal, each with its own key: exactly five.
        assert len(transfers.routes["transfers"].calls) == 5
        assert len(transfer_keys(transfers)) == 5


async def _account_id(session: AsyncSession, user: str) -> int:
    from sqlalchemy import select

    value = await session.scalar(select(PayoutAccount.id).where(PayoutAccount.user_id == user))
    assert value is not None
    return int(value)


class TestPayoutList:
    async def test_without_account(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/me/payouts", headers=auth("newbie", PAYEE))
        assert response.status_code == 200
        body = response.json()
        assert body["data"] == []
        assert body["payout_account"]["status"] == "not_started"

    async def test_lists_connected_account_payouts(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        await enabled_payee(session, "uma", 0)
        payout = stripe_object("payout")
        route = stripe_mock.get("/v1/payouts").mock(
            return_value=httpx.Response(
                200,
                json={"object": "list", "data": [payout], "has_more": False, "url": "/v1/payouts"},
            )
        )
        response = await client.get(
            "/api/v1/me/payouts?limit=5&status=in_transit", headers=auth("uma", PAYEE)
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"][0]["id"] == payout["id"]
        request = route.calls.last.request
        assert request.headers["Stripe-Account"] == ACCOUNT
        assert request.url.params["limit"] == "5"
        assert request.url.params["status"] == "in_transit"

    @pytest.mark.parametrize("query", ["limit=0", "limit=101", "status=lost"])
    async def test_bad_query(self, client: httpx.AsyncClient, query: str) -> None:
        response = await client.get(f"/api/v1/me/payouts?{query}", headers=auth("v", PAYEE))
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_payout_events_newest_wins(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await enabled_payee(session, "wes", 0, account="acct_wes")
        payout = stripe_object("payout")
        payout.update(id="po_wes", status="paid")
        now = int(datetime.now(UTC).timestamp())
        newer = make_event("payout.paid", dict(payout), created=now, account="acct_wes")
        payout.update(status="in_transit")
        older = make_event("payout.updated", dict(payout), created=now - 60, account="acct_wes")
        for event in (newer, older):
            body, headers = signed_webhook(event, TEST_CONNECT_WEBHOOK_SECRET)
            ack = await client.post(
                "/api/v1/webhooks/stripe/connect", content=body, headers=headers
            )
            assert ack.json()["status"] == "processed"
        from sqlalchemy import select

        stored = await session.scalar(
            select(Payout)
            .where(Payout.stripe_payout_id == "po_wes")
            .execution_options(populate_existing=True)
        )
        assert stored is not None
        assert stored.status == "paid"
        assert stored.user_id == "wes"


class TestWithdrawalAnswers:
    async def test_arrival_follows_the_connected_accounts_schedule(
        self, client: httpx.AsyncClient, session: AsyncSession, transfers: respx.MockRouter
    ) -> None:
        await enabled_payee(session, "sched")
        row = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == "sched"))
        assert row is not None
        row.payout_schedule = {"interval": "daily", "delay_days": 7}
        await session.flush()

        body = (await withdraw(client, "sched", amount=2_500)).json()

        today = datetime.now(UTC).date()
        assert body["expected_arrival_date"] == (today + timedelta(days=7)).isoformat()
        assert body["available_after"] == 47_500

        row.payout_schedule = {"interval": "manual"}
        await session.flush()
        manual = (await withdraw(client, "sched", amount=2_500, key="w-2")).json()
        assert manual["expected_arrival_date"] is None
        assert manual["available_after"] == 45_000

    async def test_refused_transfer_answers_the_balance_with_the_money_back(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_mock.post("/v1/transfers").mock(
            return_value=httpx.Response(
                400,
                json={"error": {"type": "invalid_request_error", "code": "balance_insufficient"}},
            )
        )
        await enabled_payee(session, "refused-bal")
        body = (await withdraw(client, "refused-bal")).json()
        assert (body["status"], body["available_after"]) == ("failed", 50_000)

    async def test_withdrawals_list_pages_with_a_cursor_past_twenty(
        self, client: httpx.AsyncClient, session: AsyncSession, transfers: respx.MockRouter
    ) -> None:
        await enabled_payee(session, "many")
        ids = [
            (await withdraw(client, "many", amount=1_000, key=f"k-{i}")).json()["id"]
            for i in range(23)
        ]
        seen: list[str] = []
        cursor = ""
        while True:
            page = (
                await client.get(
                    f"/api/v1/me/withdrawals?limit=10&starting_after={cursor}",
                    headers=auth("many", PAYEE),
                )
            ).json()
            seen += [w["id"] for w in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["data"][-1]["id"]
        assert seen == ids[::-1]
        others = await client.get("/api/v1/me/withdrawals", headers=auth("nobody-else", PAYEE))
        assert others.json() == {"object": "list", "data": [], "has_more": False}
        bad = await client.get(
            "/api/v1/me/withdrawals?starting_after=po_1", headers=auth("many", PAYEE)
        )
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor")

    async def test_payouts_list_continues_after_a_payout(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        await enabled_payee(session, "paged", 0)
        payout = stripe_object("payout")
        route = stripe_mock.get("/v1/payouts").mock(
            return_value=httpx.Response(
                200,
                json={"object": "list", "data": [payout], "has_more": True, "url": "/v1/payouts"},
            )
        )
        response = await client.get(
            "/api/v1/me/payouts?limit=1&starting_after=po_123", headers=auth("paged", PAYEE)
        )
        assert response.status_code == 200, response.text
        assert response.json()["has_more"] is True
        request = route.calls.last.request
        assert request.url.params["starting_after"] == "po_123"
        assert request.url.params["limit"] == "1"
        assert request.headers["Stripe-Account"] == ACCOUNT
