"""Auto-reload: one off-session top-up per fall below the threshold, also when 20
debits cross at once on separate connections."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.orders.models import Order
from payments_api.payment_methods.models import AutoReload, PaymentMethod
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from payments_api.topups.auto_reload import charge_auto_reload
from tests.factories import create_user, fund
from tests.helpers import auth, stripe_key
from tests.payment_methods.conftest import FakeStripeCards, form_of
from tests.payment_methods.test_card_topups import confirm_response

AVAILABLE, ESCROW = AccountKind.available, AccountKind.escrow


async def debit(session: AsyncSession, user: str, amount: int, currency: str, key: str) -> None:
    await LedgerService(session).post(
        NewTransaction(
            type="escrow_hold",
            cause_type=CauseType.escrow,
            cause_key=f"test-debit:{key}",
            postings=[
                PostingSpec(AccountRef.user(user, AVAILABLE, currency), -amount),
                PostingSpec(AccountRef.user(user, ESCROW, currency), amount),
            ],
        )
    )


def card_row(user: str) -> PaymentMethod:
    return PaymentMethod(
        user_id=user,
        stripe_payment_method_id=f"pm_ok_{uuid.uuid4().hex[:8]}",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2031,
        fingerprint=uuid.uuid4().hex[:16],
        is_default=True,
    )


async def reload_orders(session: AsyncSession, user: str) -> list[Order]:
    return list(
        (
            await session.scalars(
                select(Order)
                .where(Order.user_id == user, Order.off_session.is_(True))
                .order_by(Order.id)
                .execution_options(populate_existing=True)
            )
        ).all()
    )


class TestSettings:
    async def test_set_list_and_limits(self, client: httpx.AsyncClient) -> None:
        user = f"ar_{uuid.uuid4().hex[:8]}"
        response = await client.put(
            "/api/v1/me/auto-reloads",
            json={"currency": "usd", "threshold": 5_000, "amount": 2_000},
            headers={**auth(user), "Idempotency-Key": "a-1"},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {
            "currency": "usd",
            "threshold": 5_000,
            "amount": 2_000,
            "enabled": True,
            "below": False,
        }
        listed = await client.get("/api/v1/me/auto-reloads", headers=auth(user))
        assert listed.json()["data"] == [response.json()]
        small = await client.put(
            "/api/v1/me/auto-reloads",
            json={"currency": "usd", "threshold": 5_000, "amount": 10},
            headers={**auth(user), "Idempotency-Key": "a-2"},
        )
        assert small.json()["code"] == "amount_out_of_range"


class TestCrossing:
    async def test_one_top_up_per_crossing_charged_off_session(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe_cards: FakeStripeCards,
        gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        stripe_cards.mock.routes["intents"].mock(side_effect=confirm_response)
        user = (await create_user(session)).id
        await fund(session, user, 10_000)
        card = card_row(user)
        card.stripe_payment_method_id = "pm_ok"
        session.add(card)
        session.add(AutoReload(user_id=user, currency="usd", threshold=5_000, amount=2_000))
        await session.flush()

        await debit(session, user, 4_000, "usd", f"{user}:1")  # 6,000: above
        assert await reload_orders(session, user) == []
        await debit(session, user, 2_000, "usd", f"{user}:2")  # 4,000: crosses
        await debit(session, user, 1_000, "usd", f"{user}:3")  # 3,000: still below
        [order] = await reload_orders(session, user)
        assert (order.amount, order.status, order.payment_method_id) == (2_000, "pending", card.id)
        jobs = await session.scalar(
            text(
                "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'auto_reload.charge'"
                " AND payload = :payload"
            ),
            {"payload": str(order.id).encode()},
        )
        assert jobs == 1

        await charge_auto_reload(sessionmaker, gateway, settings, order.id)
        call = stripe_cards.mock.routes["intents"].calls.last.request
        assert call.headers["Idempotency-Key"] == stripe_key("payment_intent", order.id)
        form = form_of(call)
        assert (form["off_session"], form["confirm"], form["payment_method"]) == (
            "true",
            "true",
            "pm_ok",
        )
        assert form["amount"] == "2000"
        assert form["metadata[auto_reload]"] == "true"

        # Money back above the threshold re-arms it; the next fall tops up again.
        await fund(session, user, 3_000)  # 6,000
        await debit(session, user, 1_500, "usd", f"{user}:4")  # 4,500: crosses again
        assert len(await reload_orders(session, user)) == 2

    async def test_twenty_concurrent_debits_start_one_top_up(self, engine: AsyncEngine) -> None:
        committed = async_sessionmaker(engine, expire_on_commit=False)
        async with committed.begin() as session:
            user = (await create_user(session)).id
            await fund(session, user, 30_000, "sek")
            session.add(card_row(user))
            session.add(AutoReload(user_id=user, currency="sek", threshold=15_000, amount=5_000))

        async def one(i: int) -> None:
            async with committed.begin() as session:
                await debit(session, user, 1_000, "sek", f"{user}:c{i}")

        await asyncio.gather(*(one(i) for i in range(20)))  # 30,000 -> 10,000
        async with committed() as session:
            orders = await reload_orders(session, user)
            available = await LedgerService(session).balance_of(
                AccountRef.user(user, AVAILABLE, "sek")
            )
            count = await session.scalar(
                select(func.count()).select_from(Order).where(Order.user_id == user)
            )
        assert available == 10_000
        assert count == 1
        assert [(o.amount, o.currency, o.status) for o in orders] == [(5_000, "sek", "pending")]

    async def test_a_card_removed_before_the_charge_fails_the_order(
        self,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe_cards: FakeStripeCards,
        gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        user = (await create_user(session)).id
        await fund(session, user, 10_000)
        card = card_row(user)
        session.add(card)
        session.add(AutoReload(user_id=user, currency="usd", threshold=5_000, amount=2_000))
        await session.flush()
        await debit(session, user, 6_000, "usd", f"{user}:x")
        [order] = await reload_orders(session, user)
        card.status, card.is_default = "detached", False
        await session.flush()

        await charge_auto_reload(sessionmaker, gateway, settings, order.id)

        [order] = await reload_orders(session, user)
        assert (order.status, order.failure_code) == ("failed", "payment_method_not_found")
        assert stripe_cards.mock.routes["intents"].call_count == 0
