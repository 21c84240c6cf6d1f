"""A frozen wallet stays frozen: no money leaves it by its owner's own action.

The rule lives in the ledger (``NewTransaction.initiated_by``); these tests go through
the HTTP API, one outgoing path at a time, and check both the answer and that nothing
changed. Money coming in and admin actions still work.
"""

from __future__ import annotations

import uuid

import httpx
import respx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.models import LedgerTransaction
from payments_api.payouts.models import Withdrawal
from tests.escrow.helpers import ESCROWS, balance, headers, offer, parties
from tests.factories import create_user, fund
from tests.helpers import auth
from tests.payouts.test_withdrawals import enabled_payee

ADMIN = {**auth("freeze-admin", ["admin"])}


async def _freeze(client: httpx.AsyncClient, user_id: str) -> None:
    response = await client.post(
        f"/api/v1/admin/wallets/{user_id}/freeze",
        json={"reason": "fraud review"},
        headers={**ADMIN, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 200, response.text
    assert response.json()["frozen"] is True


async def _transactions(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0)


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "wallet_frozen"


class TestFrozenWalletRefusesOutgoingMoney:
    async def test_funding_an_escrow_is_refused_and_changes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session, "fz-fund")
        await fund(session, customer.id, 50_000)
        await _freeze(client, customer.id)
        before = await _transactions(session)

        response = await client.post(
            ESCROWS, json=offer(payee.id), headers=headers(customer.id, ["customer"])
        )

        _refused(response)
        assert await _transactions(session) == before
        assert await balance(session, customer.id, AccountKind.available, "usd") == 50_000
        assert await balance(session, customer.id, AccountKind.escrow, "usd") == 0

    async def test_the_customer_completing_is_refused_but_an_admin_may(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session, "fz-complete")
        await fund(session, customer.id, 50_000)
        created = await client.post(
            ESCROWS, json=offer(payee.id), headers=headers(customer.id, ["customer"])
        )
        escrow_id = created.json()["id"]
        accepted = await client.post(
            f"{ESCROWS}/{escrow_id}/accept", headers=headers(payee.id, ["payee"])
        )
        assert accepted.status_code == 200, accepted.text
        await _freeze(client, customer.id)

        by_customer = await client.post(
            f"{ESCROWS}/{escrow_id}/complete", headers=headers(customer.id, ["customer"])
        )
        _refused(by_customer)
        assert await balance(session, payee.id, AccountKind.available, "usd") == 0
        assert (await client.get(f"{ESCROWS}/{escrow_id}", headers=ADMIN)).json()[
            "status"
        ] == "accepted"

        by_admin = await client.post(
            f"{ESCROWS}/{escrow_id}/complete", headers=headers("freeze-admin", ["admin"])
        )
        assert by_admin.status_code == 200, by_admin.text
        assert by_admin.json()["status"] == "completed"
        # Incoming money still reaches a payee (8,000 = 80% of 10,000).
        assert await balance(session, payee.id, AccountKind.available, "usd") == 8_000

    async def test_a_withdrawal_is_refused_and_nothing_is_sent_to_stripe(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_mock: respx.MockRouter,
    ) -> None:
        transfers = stripe_mock.post("/v1/transfers")
        await enabled_payee(session, "fz-payee", amount=20_000)
        await _freeze(client, "fz-payee")

        response = await client.post(
            "/api/v1/me/payouts",
            json={"amount": 5_000, "currency": "usd"},
            headers={**auth("fz-payee", ["payee"]), "Idempotency-Key": uuid.uuid4().hex},
        )

        _refused(response)
        assert transfers.call_count == 0
        assert await balance(session, "fz-payee", AccountKind.available, "usd") == 20_000
        assert await balance(session, "fz-payee", AccountKind.withdrawing, "usd") == 0
        count = await session.scalar(
            select(func.count()).select_from(Withdrawal).where(Withdrawal.user_id == "fz-payee")
        )
        assert count == 0


class TestFrozenWalletStillReceives:
    async def test_a_frozen_payee_is_paid_for_a_completed_job(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session, "fz-in")
        await fund(session, customer.id, 50_000)
        created = await client.post(
            ESCROWS, json=offer(payee.id), headers=headers(customer.id, ["customer"])
        )
        escrow_id = created.json()["id"]
        await client.post(f"{ESCROWS}/{escrow_id}/accept", headers=headers(payee.id, ["payee"]))
        await _freeze(client, payee.id)

        completed = await client.post(
            f"{ESCROWS}/{escrow_id}/complete", headers=headers(customer.id, ["customer"])
        )

        assert completed.status_code == 200, completed.text
        assert await balance(session, payee.id, AccountKind.available, "usd") == 8_000

    async def test_an_admin_adjustment_credits_a_frozen_wallet(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await create_user(session, id="fz-adjusted")
        await _freeze(client, "fz-adjusted")

        response = await client.post(
            "/api/v1/admin/adjustments",
            json={
                "currency": "usd",
                "reason": "goodwill credit",
                "postings": [
                    {"account": {"user_id": "fz-adjusted", "kind": "available"}, "amount": 1_500},
                    {"account": {"kind": "adjustments"}, "amount": -1_500},
                ],
            },
            headers={**ADMIN, "Idempotency-Key": uuid.uuid4().hex},
        )

        assert response.status_code == 201, response.text
        assert await balance(session, "fz-adjusted", AccountKind.available, "usd") == 1_500
