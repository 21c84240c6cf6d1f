"""Debits and cash-outs of one wallet at once, each request on its own connection,
committing for real: together they never take more than the wallet holds."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import respx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.service import AccountRef, LedgerService
from payments_api.orders.models import Order
from tests.factories import create_user
from tests.helpers import auth, make_event, stripe_object
from tests.refunds.helpers import deliver, refund_from_request

TOPUPS = (3_000, 2_000)
BALANCE = sum(TOPUPS)
EACH = 700
ROUNDS = 10  # 10 debits + 10 cash-outs of 7.00 against 50.00: 140.00 asked


async def paid_topups(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> str:
    """A committed customer with two top-ups confirmed through the webhook."""
    user_id = f"spend_{uuid.uuid4().hex[:10]}"
    async with sessionmaker.begin() as session:
        await create_user(session, id=user_id)
    for amount in TOPUPS:
        payment_intent = f"pi_spend_{uuid.uuid4().hex[:10]}"
        async with sessionmaker.begin() as session:
            order = Order(
                user_id=user_id,
                purpose="topup",
                channel="payment_intent",
                status="pending",
                amount=amount,
                currency="usd",
                idempotency_key=uuid.uuid4().hex,
                request_fingerprint="0" * 64,
                stripe_payment_intent_id=payment_intent,
                reference={},
            )
            session.add(order)
        intent = stripe_object("payment_intent")
        intent.update(
            id=payment_intent,
            amount=amount,
            amount_received=amount,
            currency="usd",
            status="succeeded",
            latest_charge=None,
            last_payment_error=None,
            metadata={"order_id": str(order.id), "user_id": user_id, "purpose": "topup"},
        )
        paid = await deliver(client, make_event("payment_intent.succeeded", intent))
        assert paid.json()["status"] == "processed", paid.text
    return user_id


async def test_twenty_debits_and_cash_outs_at_once_take_exactly_what_the_wallet_holds(
    committed_client: httpx.AsyncClient, engine: AsyncEngine, stripe_mock: respx.MockRouter
) -> None:
    committed = async_sessionmaker(engine, expire_on_commit=False)
    # Stripe takes each refund and has not confirmed it yet: the cash-outs stay held.
    refunds = stripe_mock.post("/v1/refunds").mock(
        side_effect=lambda request: httpx.Response(
            200, json=refund_from_request(request, status="pending", currency="usd")
        )
    )
    user_id = await paid_topups(committed_client, committed)
    service = {**auth("platform-backend", ["service"])}

    def debit() -> asyncio.Future[httpx.Response]:
        return asyncio.ensure_future(
            committed_client.post(
                f"/api/v1/wallets/{user_id}/debits",
                json={"amount": EACH, "currency": "usd", "description": "usage"},
                headers={**service, "Idempotency-Key": uuid.uuid4().hex},
            )
        )

    def cash_out() -> asyncio.Future[httpx.Response]:
        return asyncio.ensure_future(
            committed_client.post(
                "/api/v1/me/wallet/refunds",
                json={"amount": EACH, "currency": "usd"},
                headers={**auth(user_id), "Idempotency-Key": uuid.uuid4().hex},
            )
        )

    calls = [f() for _ in range(ROUNDS) for f in (debit, cash_out)]
    responses = await asyncio.gather(*calls)

    debits = responses[0::2]
    cash_outs = responses[1::2]
    ok_debits = [r for r in debits if r.status_code == 201]
    ok_cash_outs = [r for r in cash_outs if r.status_code == 201]
    refused = [r for r in responses if r.status_code not in (201,)]
    assert all((r.status_code, r.json()["code"]) == (402, "insufficient_funds") for r in refused), [
        r.text for r in refused
    ]
    taken = sum(r.json()["amount"] for r in ok_debits + ok_cash_outs)
    # Every operation is 7.00 and the wallet holds 50.00: exactly seven fit.
    assert len(ok_debits) + len(ok_cash_outs) == BALANCE // EACH
    assert taken == BALANCE // EACH * EACH <= BALANCE
    # One Stripe refund per part (a cash-out may span both top-ups); a refused cash-out
    # asks Stripe nothing.
    assert refunds.call_count == sum(len(r.json()["refunds"]) for r in ok_cash_outs)

    async with committed() as session:
        ledger = LedgerService(session)

        async def balance(kind: AccountKind) -> int:
            return await ledger.balance_of(AccountRef.user(user_id, kind, "usd"))

        assert await balance(AccountKind.available) == BALANCE - taken
        assert await balance(AccountKind.refunding) == EACH * len(ok_cash_outs)
        # The cached balances equal the sum of the postings, account by account.
        drift = await session.scalar(
            text(
                """
                SELECT count(*) FROM ledger_accounts a
                WHERE a.owner_user_id = :user AND
                  (SELECT coalesce(sum(balance), 0) FROM ledger_balances b
                   WHERE b.account_id = a.id)
                  <> (SELECT coalesce(sum(amount), 0) FROM ledger_postings p
                      WHERE p.account_id = a.id)
                """
            ),
            {"user": user_id},
        )
        assert drift == 0
        posted = await session.scalar(
            text(
                "SELECT coalesce(sum(p.amount), 0) FROM ledger_postings p"
                " JOIN ledger_accounts a ON a.id = p.account_id"
                " WHERE a.owner_user_id = :user AND a.kind = 'available'"
            ),
            {"user": user_id},
        )
        assert posted == BALANCE - taken
