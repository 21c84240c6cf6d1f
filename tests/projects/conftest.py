"""Fixtures of the projects tests: payees set up through the HTTP API (projects created
by their routes, payout accounts enabled by a signed Connect ``account.updated`` in
Stripe's real shape), Stripe answered by respx in its real shapes."""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.orders.models import Order
from payments_api.projects.models import DirectPayment
from tests.conftest import TEST_CONNECT_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET
from tests.helpers import auth, make_event, signed_webhook, stripe_object
from tests.payout_accounts import shapes

URLS = {
    "success_url": "http://localhost:3000/tip?paid=1",
    "cancel_url": "http://localhost:3000/tip",
}


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def _customer_response(request: httpx.Request) -> httpx.Response:
    # One customer id per user: Stripe's example id is unique in the users table, and
    # other suites commit users holding it.
    customer = copy.deepcopy(stripe_object("customer"))
    customer["id"] = f"cus_{form_of(request)['metadata[user_id]']}"
    return httpx.Response(200, json=customer)


def _checkout_session_response(request: httpx.Request) -> httpx.Response:
    """Stripe's Checkout Session object echoing what was asked (as Stripe does)."""
    form = form_of(request)
    session = copy.deepcopy(stripe_object("checkout.session"))
    key = request.headers.get("Idempotency-Key", "")
    number = uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:16]
    session.update(
        id=f"cs_test_{number}",
        url=f"https://checkout.stripe.com/c/pay/cs_test_{number}",
        amount_total=int(form["line_items[0][price_data][unit_amount]"]),
        currency=form["line_items[0][price_data][currency]"],
        customer=form["customer"],
        metadata={k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
        expires_at=int(form["expires_at"]),
        payment_intent=None,
        payment_status="unpaid",
        status="open",
    )
    return httpx.Response(200, json=session)


@pytest.fixture
def stripe_direct(stripe_mock: respx.MockRouter) -> respx.MockRouter:
    stripe_mock.post("/v1/customers", name="customers").mock(side_effect=_customer_response)
    stripe_mock.post("/v1/checkout/sessions", name="sessions").mock(
        side_effect=_checkout_session_response
    )
    return stripe_mock


def balance_object(
    available: list[tuple[int, str]], pending: list[tuple[int, str]]
) -> dict[str, Any]:
    """Stripe's balance object with the given amounts."""
    balance = copy.deepcopy(stripe_object("balance"))
    template = balance["available"][0]
    balance["available"] = [
        {**template, "amount": a, "currency": c, "source_types": {"card": a}} for a, c in available
    ]
    balance["pending"] = [
        {**template, "amount": a, "currency": c, "source_types": {"card": a}} for a, c in pending
    ]
    return balance


@dataclass(frozen=True)
class Payee:
    id: str
    account_id: str
    headers: dict[str, str]


def new_payee() -> Payee:
    user_id = f"payee_{uuid.uuid4().hex[:12]}"
    return Payee(
        id=user_id,
        account_id=f"acct_{uuid.uuid4().hex[:16]}",
        headers=auth(user_id, ["payee"]),
    )


def new_customer() -> tuple[str, dict[str, str]]:
    user_id = f"cust_{uuid.uuid4().hex[:12]}"
    return user_id, auth(user_id, ["customer"])


async def create_project(
    client: httpx.AsyncClient, payee: Payee, currency: str = "usd", name: str = "Live show"
) -> str:
    response = await client.post(
        "/api/v1/me/projects",
        json={"name": name, "currency": currency},
        headers=payee.headers,
    )
    assert response.status_code == 201, response.text
    project_id: str = response.json()["id"]
    return project_id


async def open_session(client: httpx.AsyncClient, payee: Payee, project_id: str) -> str:
    response = await client.post(
        f"/api/v1/me/projects/{project_id}/sessions", json={"title": "Show"}, headers=payee.headers
    )
    assert response.status_code == 201, response.text
    session_id: str = response.json()["id"]
    return session_id


async def deliver_connect(client: httpx.AsyncClient, account: dict[str, Any]) -> None:
    event = make_event("account.updated", account, account=account["id"])
    body, headers = signed_webhook(event, TEST_CONNECT_WEBHOOK_SECRET)
    response = await client.post("/api/v1/webhooks/stripe/connect", content=body, headers=headers)
    assert response.status_code == 200, response.text


async def enable_payouts(client: httpx.AsyncClient, payee: Payee) -> None:
    """Stripe tells us (Connect webhook) that the payee's Express account is enabled."""
    await deliver_connect(client, shapes.enabled_account(payee.account_id, payee.id))


async def restrict_payouts(client: httpx.AsyncClient, payee: Payee) -> None:
    await deliver_connect(client, shapes.fresh_account(payee.account_id, payee.id))


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    body, headers = signed_webhook(event, TEST_WEBHOOK_SECRET)
    response = await client.post("/api/v1/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


async def start_direct(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any],
    key: str | None = None,
) -> httpx.Response:
    return await client.post(
        "/api/v1/checkout/sessions",
        json={"purpose": "direct", **URLS, **body},
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


def completed_session(order: Order, payment_intent: str) -> dict[str, Any]:
    """``checkout.session.completed``'s object for a paid direct payment."""
    session = copy.deepcopy(stripe_object("checkout.session"))
    session.update(
        id=order.stripe_checkout_session_id,
        amount_total=order.amount,
        currency=order.currency,
        payment_status="paid",
        status="complete",
        payment_intent=payment_intent,
        metadata={"order_id": str(order.id), "user_id": order.user_id, "purpose": "direct"},
    )
    return session


def succeeded_intent(
    order: Order, payment_intent: str, *, charge: str | None = None
) -> dict[str, Any]:
    """``payment_intent.succeeded``'s object for a destination charge."""
    intent = copy.deepcopy(stripe_object("payment_intent"))
    intent.update(
        id=payment_intent,
        amount=order.amount,
        amount_received=order.amount,
        currency=order.currency,
        status="succeeded",
        latest_charge=charge,
        last_payment_error=None,
        application_fee_amount=order.reference["application_fee_amount"],
        transfer_data={"destination": order.reference["destination"]},
        metadata={"order_id": str(order.id), "user_id": order.user_id, "purpose": "direct"},
        created=int(time.time()),
    )
    return intent


async def orders_of(session: AsyncSession, user_id: str) -> list[Order]:
    rows = await session.scalars(
        select(Order)
        .where(Order.user_id == user_id)
        .order_by(Order.id)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def direct_payment_count(session: AsyncSession, **where: Any) -> int:
    stmt = select(func.count()).select_from(DirectPayment)
    for name, value in where.items():
        stmt = stmt.where(getattr(DirectPayment, name) == value)
    return int(await session.scalar(stmt) or 0)


async def ledger_postings(session: AsyncSession, cause_key: str) -> list[tuple[str, int]]:
    """(account kind, amount) of every posting of the transaction with ``cause_key``."""
    rows = await session.execute(
        text(
            "SELECT a.kind, p.amount FROM ledger_transactions t"
            " JOIN ledger_postings p ON p.transaction_id = t.id"
            " JOIN ledger_accounts a ON a.id = p.account_id"
            " WHERE t.cause_key = :key ORDER BY a.kind"
        ),
        {"key": cause_key},
    )
    return [(str(kind), int(amount)) for kind, amount in rows.all()]
