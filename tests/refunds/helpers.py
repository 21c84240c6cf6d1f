"""Shared by the refunds, disputes and reconciliation tests: paid pay-ins through the
real webhook path, Stripe-shaped refunds, and ledger reads."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.service import AccountRef, LedgerService
from payments_api.orders.models import Order
from payments_api.users.models import User
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.factories import create_user
from tests.helpers import auth, make_event, signed_webhook, stripe_object

ADMIN = auth("admin_1", ["admin"])


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    body, headers = signed_webhook(event, TEST_WEBHOOK_SECRET)
    return await client.post("/api/v1/webhooks/stripe", content=body, headers=headers)


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


async def paid_order(
    client: httpx.AsyncClient,
    session: AsyncSession,
    *,
    user_id: str | None = None,
    amount: int = 2_000,
    currency: str = "usd",
    purpose: str = "topup",
) -> Order:
    """A pay-in confirmed through the real ``payment_intent.succeeded`` webhook."""
    user_id = user_id or f"cust_{uuid.uuid4().hex[:10]}"
    if await session.get(User, user_id) is None:
        await create_user(session, id=user_id)
    payment_intent = f"pi_{uuid.uuid4().hex[:14]}"
    order = Order(
        user_id=user_id,
        purpose=purpose,
        channel="payment_intent",
        status="pending",
        amount=amount,
        currency=currency,
        idempotency_key=uuid.uuid4().hex,
        request_fingerprint="0" * 64,
        stripe_payment_intent_id=payment_intent,
        reference={},
    )
    session.add(order)
    await session.flush()
    intent = stripe_object("payment_intent")
    intent.update(
        id=payment_intent,
        amount=amount,
        amount_received=amount,
        currency=currency,
        status="succeeded",
        latest_charge=None,
        last_payment_error=None,
        metadata={"order_id": str(order.id), "user_id": user_id, "purpose": purpose},
    )
    response = await deliver(client, make_event("payment_intent.succeeded", intent))
    assert response.json()["status"] == "processed", response.text
    return await reload(session, order)


async def reload(session: AsyncSession, order: Order) -> Order:
    fresh = await session.scalar(
        select(Order).where(Order.id == order.id).execution_options(populate_existing=True)
    )
    assert fresh is not None
    return fresh


def stripe_refund(
    *,
    refund_id: str,
    amount: int,
    payment_intent: str,
    currency: str = "usd",
    status: str = "succeeded",
    metadata: dict[str, str] | None = None,
    charge: str = "ch_test_refunded",
    failure_reason: str | None = None,
) -> dict[str, Any]:
    refund = stripe_object("refund")
    refund.update(
        id=refund_id,
        amount=amount,
        currency=currency,
        payment_intent=payment_intent,
        charge=charge,
        status=status,
        metadata=metadata or {},
        reason="requested_by_customer",
    )
    if failure_reason is not None:
        refund["failure_reason"] = failure_reason
    return refund


def refund_from_request(request: httpx.Request, *, status: str, currency: str) -> dict[str, Any]:
    """What Stripe answers to POST /v1/refunds: the refund, echoing the request."""
    params = form(request)
    key = request.headers["Idempotency-Key"]
    return stripe_refund(
        refund_id=f"re_{key.replace(':', '_')}",
        amount=int(params["amount"]),
        payment_intent=params["payment_intent"],
        currency=currency,
        status=status,
        metadata={k[9:-1]: v for k, v in params.items() if k.startswith("metadata[")},
    )


async def wallet(session: AsyncSession, user_id: str, currency: str = "usd") -> dict[str, int]:
    ledger = LedgerService(session)
    return {
        kind.value: await ledger.balance_of(AccountRef.user(user_id, kind, currency))
        for kind in (AccountKind.available, AccountKind.escrow, AccountKind.withdrawing)
    }


async def platform(session: AsyncSession, kind: AccountKind, currency: str = "usd") -> int:
    return await LedgerService(session).balance_of(AccountRef.platform(kind, currency))


async def cause_count(session: AsyncSession, pattern: str) -> int:
    return int(
        await session.scalar(
            text("SELECT count(*) FROM ledger_transactions WHERE cause_key LIKE :p"),
            {"p": pattern},
        )
        or 0
    )
