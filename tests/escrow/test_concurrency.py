"""Concurrent escrow requests over HTTP, each committing in its own transaction.

These tests commit, so they use fresh users and a currency of their own (chf, sgd, hkd)
and measure platform balances as deltas.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.earnings.models import Earning
from payments_api.escrow.models import Escrow
from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.models import LedgerTransaction
from tests.escrow.helpers import ESCROWS, balance, fees, headers, offer
from tests.factories import create_user, fund, ledger_invariants

AVAILABLE, ESCROW = AccountKind.available, AccountKind.escrow
CUSTOMER, PAYEE = ["customer"], ["payee"]


async def _parties(
    committed: async_sessionmaker[AsyncSession], amount: int, currency: str
) -> tuple[str, str]:
    async with committed.begin() as session:
        tag = uuid.uuid4().hex[:10]
        customer = await create_user(session, id=f"conc-cust-{tag}", roles=CUSTOMER)
        payee = await create_user(session, id=f"conc-payee-{tag}", roles=PAYEE)
        await fund(session, customer.id, amount, currency)
        return customer.id, payee.id


async def _read(committed: async_sessionmaker[AsyncSession], fn: Any) -> Any:
    async with committed() as session:
        return await fn(session)


async def _create(client: httpx.AsyncClient, customer: str, payee: str, **body: Any) -> str:
    response = await client.post(
        ESCROWS, json=offer(payee, **body), headers=headers(customer, CUSTOMER)
    )
    assert response.status_code == 201, response.text
    escrow_id: str = response.json()["id"]
    return escrow_id


def _post(client: httpx.AsyncClient, escrow_id: str, action: str, sub: str, roles: list[str],
          **kw: Any) -> Any:  # fmt: skip
    return client.post(f"{ESCROWS}/{escrow_id}/{action}", headers=headers(sub, roles), **kw)


class TestConcurrentEscrows:
    async def test_twenty_concurrent_completes_settle_once(
        self, live_client: httpx.AsyncClient, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        customer, payee = await _parties(committed, 10_500, "chf")
        escrow_id = await _create(live_client, customer, payee, amount=10_000, currency="chf")
        assert (await _post(live_client, escrow_id, "accept", payee, PAYEE)).status_code == 200
        fees_before = await _read(committed, lambda s: fees(s, "chf"))

        responses = await asyncio.gather(
            *(_post(live_client, escrow_id, "complete", customer, CUSTOMER) for _ in range(20))
        )
        assert [r.status_code for r in responses] == [200] * 20
        bodies = [r.json() for r in responses]
        assert all(body == bodies[0] for body in bodies)
        assert bodies[0]["status"] == "completed"

        number = int(escrow_id.removeprefix("esc_"))

        async def check(session: AsyncSession) -> None:
            settlements = await session.scalar(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.cause_key == f"escrow:{number}:complete")
            )
            assert settlements == 1
            earnings = await session.scalar(
                select(func.count()).select_from(Earning).where(Earning.escrow_id == number)
            )
            assert earnings == 1
            assert await balance(session, payee, AVAILABLE, "chf") == 8_000
            assert await balance(session, customer, ESCROW, "chf") == 0
            assert await fees(session, "chf") - fees_before == 2_000

        await _read(committed, check)

    async def test_accept_racing_cancel_has_one_outcome(
        self, live_client: httpx.AsyncClient, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        rounds = 8
        customer, payee = await _parties(committed, rounds * 1_050, "sgd")
        fees_before = await _read(committed, lambda s: fees(s, "sgd"))
        ids = [
            await _create(live_client, customer, payee, amount=1_000, currency="sgd")
            for _ in range(rounds)
        ]
        accepted = 0
        for escrow_id in ids:
            accept, cancel = await asyncio.gather(
                _post(live_client, escrow_id, "accept", payee, PAYEE),
                # what a UI sends: cancel the offer as it was shown (not yet accepted)
                _post(
                    live_client, escrow_id, "cancel", customer, CUSTOMER,
                    json={"expected_status": "created"},
                ),
            )  # fmt: skip
            outcomes = sorted([accept.status_code, cancel.status_code])
            assert outcomes == [200, 409], (accept.text, cancel.text)
            loser = accept if accept.status_code == 409 else cancel
            assert loser.json()["code"] == "escrow_invalid_transition"
            final = "accepted" if accept.status_code == 200 else "cancelled"
            assert loser.json()["current_status"] == final
            accepted += accept.status_code == 200

        async def check(session: AsyncSession) -> None:
            statuses = (
                await session.scalars(select(Escrow.status).where(Escrow.customer_id == customer))
            ).all()
            assert statuses.count("accepted") == accepted
            assert statuses.count("cancelled") == rounds - accepted
            # accepted: price still held, fee taken; cancelled: all back
            assert await balance(session, customer, ESCROW, "sgd") == accepted * 1_000
            assert await fees(session, "sgd") - fees_before == accepted * 50
            assert await balance(session, customer, AVAILABLE, "sgd") == (rounds - accepted) * 1_050
            assert await ledger_invariants(session) == []

        await _read(committed, check)

    async def test_accept_racing_cancel_without_expected_status_serialises(
        self, live_client: httpx.AsyncClient, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        customer, payee = await _parties(committed, 1_050, "sgd")
        fees_before = await _read(committed, lambda s: fees(s, "sgd"))
        escrow_id = await _create(live_client, customer, payee, amount=1_000, currency="sgd")
        accept, cancel = await asyncio.gather(
            _post(live_client, escrow_id, "accept", payee, PAYEE),
            _post(live_client, escrow_id, "cancel", customer, CUSTOMER),
        )
        # The cancel always ends the escrow; if the accept came first, the cancel is a
        # cancel-after-accept (fee kept), otherwise the accept is refused.
        assert cancel.status_code == 200
        assert cancel.json()["status"] == "cancelled"
        fee_taken = 50 if accept.status_code == 200 else 0
        assert accept.status_code in (200, 409)

        async def check(session: AsyncSession) -> None:
            assert await balance(session, customer, ESCROW, "sgd") == 0
            assert await balance(session, customer, AVAILABLE, "sgd") == 1_050 - fee_taken
            assert await fees(session, "sgd") - fees_before == fee_taken

        await _read(committed, check)

    async def test_fifty_offers_racing_for_a_balance_that_covers_ten(
        self, live_client: httpx.AsyncClient, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        customer, payee = await _parties(committed, 10 * 1_050, "hkd")
        responses = await asyncio.gather(
            *(
                live_client.post(
                    ESCROWS,
                    json=offer(payee, amount=1_000, currency="hkd"),
                    headers=headers(customer, CUSTOMER),
                )
                for _ in range(50)
            )
        )
        codes = [r.status_code for r in responses]
        assert codes.count(201) == 10, codes
        assert codes.count(402) == 40
        assert {r.json()["code"] for r in responses if r.status_code == 402} == {
            "insufficient_funds"
        }

        async def check(session: AsyncSession) -> None:
            created = await session.scalar(
                select(func.count()).select_from(Escrow).where(Escrow.customer_id == customer)
            )
            assert created == 10
            assert await balance(session, customer, AVAILABLE, "hkd") == 0
            assert await balance(session, customer, ESCROW, "hkd") == 10 * 1_050
            assert await ledger_invariants(session) == []

        await _read(committed, check)
