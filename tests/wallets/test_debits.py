"""Wallet debits by the platform's backend (role service): once per key, never below
zero, refused while frozen, exact under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.service import AccountRef, LedgerService
from tests.factories import create_user, emitted, fund, ledger_invariants
from tests.helpers import auth

SERVICE = ["service"]


def debit_of(user: str, amount: int, **extra: Any) -> tuple[str, dict[str, Any]]:
    return f"/api/v1/wallets/{user}/debits", {
        "amount": amount,
        "currency": "usd",
        "description": "SMS credits",
    } | extra


def service_headers(key: str | None = None) -> dict[str, str]:
    return {**auth("platform-backend", SERVICE), "Idempotency-Key": key or uuid.uuid4().hex}


async def available(session: AsyncSession, user: str) -> int:
    return await LedgerService(session).balance_of(
        AccountRef.user(user, AccountKind.available, "usd")
    )


async def test_a_debit_moves_money_once_and_is_announced_once(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await create_user(session, id=f"debit-{uuid.uuid4().hex[:8]}")
    await fund(session, user.id, 1_000)
    path, body = debit_of(user.id, 300, reference="usage-42")
    headers = service_headers()
    first = await client.post(path, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post(path, json=body, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"

    debit = first.json()
    assert (debit["amount"], debit["available_after"], debit["reference"]) == (
        300,
        700,
        "usage-42",
    )
    assert await available(session, user.id) == 700
    assert await emitted(session, user.id) == [("wallet.debited", debit)]
    assert await ledger_invariants(session) == []


async def test_short_available_is_refused_and_takes_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await create_user(session, id=f"debit-{uuid.uuid4().hex[:8]}")
    await fund(session, user.id, 100)
    path, body = debit_of(user.id, 101)
    response = await client.post(path, json=body, headers=service_headers())
    assert response.status_code == 402
    assert (response.json()["code"], response.json()["balance"]) == ("insufficient_funds", 100)
    assert await available(session, user.id) == 100
    assert await emitted(session, user.id) == []


async def test_only_a_service_debits(client: httpx.AsyncClient, session: AsyncSession) -> None:
    user = await create_user(session, id=f"debit-{uuid.uuid4().hex[:8]}")
    await fund(session, user.id, 100)
    path, body = debit_of(user.id, 10)
    for roles in (["customer"], ["admin"], ["payee"]):
        response = await client.post(
            path, json=body, headers={**auth(user.id, roles), "Idempotency-Key": "k"}
        )
        assert response.status_code == 403
    assert await available(session, user.id) == 100


async def test_frozen_wallets_and_bad_amounts_are_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await create_user(session, id=f"debit-{uuid.uuid4().hex[:8]}")
    await fund(session, user.id, 5_000)
    cases = [
        (debit_of(user.id, 10, currency="xof"), 422, "currency_not_supported"),
        (debit_of(user.id, 10_000_01), 422, "amount_out_of_range"),
        (debit_of("nobody-here", 10), 404, "user_not_found"),
    ]
    for (path, body), status, code in cases:
        response = await client.post(path, json=body, headers=service_headers())
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
    await session.execute(text("UPDATE users SET frozen = true WHERE id = :id"), {"id": user.id})
    path, body = debit_of(user.id, 10)
    frozen = await client.post(path, json=body, headers=service_headers())
    assert (frozen.status_code, frozen.json()["code"]) == (409, "wallet_frozen")
    assert await available(session, user.id) == 5_000


async def test_twenty_concurrent_debits_take_exactly_what_there_is(
    committed_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    user = f"debit-race-{uuid.uuid4().hex[:8]}"
    async with sessions.begin() as session:
        await create_user(session, id=user)
        await fund(session, user, 1_000)
    path, body = debit_of(user, 100)
    responses = await asyncio.gather(
        *(committed_client.post(path, json=body, headers=service_headers()) for _ in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [402] * 10
    assert {r.json()["code"] for r in responses if r.status_code == 402} == {"insufficient_funds"}
    async with sessions() as session:
        assert await available(session, user) == 0
        assert len(await emitted(session, user)) == 10
        assert await ledger_invariants(session) == []
