from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind
from payments_api.users.models import User
from tests.factories import create_user, fund
from tests.helpers import auth


class TestBalanceRouter:
    async def test_new_user_has_no_balances(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/me/balance", headers=auth("fresh"))
        assert response.status_code == 200
        assert response.json() == {"object": "balance", "balances": [], "frozen": False}

    async def test_balances_per_currency_zero_omitted(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await create_user(session, id="bal-user")
        await fund(session, user.id, 20_000, "usd")
        await fund(session, user.id, 10_500, "usd", kind=AccountKind.escrow)
        await fund(session, user.id, 500, "jpy")
        await fund(session, user.id, 1, "eur")
        await fund(session, user.id, -1, "eur")  # back to zero: omitted
        response = await client.get("/api/v1/me/balance", headers=auth("bal-user"))
        assert response.json()["balances"] == [
            {
                "currency": "jpy",
                "available": 500,
                "escrow": 0,
                "withdrawing": 0,
                "refunding": 0,
                "pending": 0,
                "authorized": 0,
            },
            {
                "currency": "usd",
                "available": 20_000,
                "escrow": 10_500,
                "withdrawing": 0,
                "refunding": 0,
                "pending": 0,
                "authorized": 0,
            },
        ]

    async def test_requires_auth(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/api/v1/me/balance")).status_code == 401

    async def test_first_sight_provisions_the_user_like_every_route(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = auth("bal-new", ["payee", "customer"], email="new@example.com")
        response = await client.get("/api/v1/me/balance", headers=headers)
        assert response.status_code == 200
        user = await session.get(User, "bal-new")
        assert user is not None
        assert (user.roles, user.email) == (["customer", "payee"], "new@example.com")

    async def test_changed_roles_in_the_token_refresh_the_user(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await create_user(session, id="bal-roles", roles=["customer"])
        await client.get("/api/v1/me/balance", headers=auth("bal-roles", ["customer", "payee"]))
        session.expire_all()
        user = await session.get(User, "bal-roles")
        assert user is not None
        assert user.roles == ["customer", "payee"]

    async def test_frozen_flag_and_balances_come_from_one_read(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await create_user(session, id="bal-frozen", frozen=True)
        await fund(session, user.id, 700, "eur")
        response = await client.get("/api/v1/me/balance", headers=auth("bal-frozen"))
        assert response.json() == {
            "object": "balance",
            "balances": [
                {
                    "currency": "eur",
                    "available": 700,
                    "escrow": 0,
                    "withdrawing": 0,
                    "refunding": 0,
                    "pending": 0,
                    "authorized": 0,
                }
            ],
            "frozen": True,
        }


class TestLedgerRouter:
    async def test_pagination_newest_first(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await create_user(session, id="ledger-user")
        other = await create_user(session, id="someone-else")
        for amount in (100, 200, 300, 400, 500):
            await fund(session, user.id, amount)
        await fund(session, other.id, 999)
        headers = auth("ledger-user")
        first = (await client.get("/api/v1/me/ledger?limit=2", headers=headers)).json()
        assert [e["amount"] for e in first["data"]] == [500, 400]
        assert first["has_more"] is True
        cursor = first["data"][-1]["id"]
        second = (
            await client.get(f"/api/v1/me/ledger?limit=3&starting_after={cursor}", headers=headers)
        ).json()
        assert [e["amount"] for e in second["data"]] == [300, 200, 100]
        assert second["has_more"] is False
        entry = second["data"][0]
        assert entry["account"] == "available"
        assert entry["type"] == "topup"
        assert entry["id"].startswith("le_")
        assert entry["transaction_id"].startswith("ltx_")

    async def test_filters(self, client: httpx.AsyncClient, session: AsyncSession) -> None:
        user = await create_user(session, id="filter-user")
        await fund(session, user.id, 100, "usd")
        await fund(session, user.id, 200, "eur")
        headers = auth("filter-user")
        eur = (await client.get("/api/v1/me/ledger?currency=eur", headers=headers)).json()
        assert [e["amount"] for e in eur["data"]] == [200]
        upper = await client.get("/api/v1/me/ledger?currency=EUR", headers=headers)
        assert upper.status_code == 422, upper.text
        assert [e["type"] for e in upper.json()["errors"]] == ["currency_not_lowercase"]
        none = (await client.get("/api/v1/me/ledger?type=refund", headers=headers)).json()
        assert none["data"] == []

    async def test_bad_cursor_and_limit(self, client: httpx.AsyncClient) -> None:
        bad = await client.get("/api/v1/me/ledger?starting_after=ltx_1", headers=auth())
        assert bad.status_code == 422
        assert bad.json()["code"] == "invalid_cursor"
        too_big = await client.get("/api/v1/me/ledger?limit=101", headers=auth())
        assert too_big.json()["code"] == "validation_error"
        currency = await client.get("/api/v1/me/ledger?currency=xyz", headers=auth())
        assert currency.json()["code"] == "validation_error"
