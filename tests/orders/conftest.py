from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
import respx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers import stripe_key, stripe_object


def checkout_session_response(request: httpx.Request) -> httpx.Response:
    """Stripe's Checkout Session object, echoing what was asked for (as Stripe does)."""
    from urllib.parse import parse_qs

    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    session = stripe_object("checkout.session")
    key = request.headers.get("Idempotency-Key", "")
    session.update(
        id=f"cs_test_{abs(hash(key)) % 10**12}",
        url=f"https://checkout.stripe.com/c/pay/cs_test_{abs(hash(key)) % 10**12}",
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


def payment_intent_response(request: httpx.Request) -> httpx.Response:
    from urllib.parse import parse_qs

    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    intent = stripe_object("payment_intent")
    key = request.headers.get("Idempotency-Key", "")
    pi = f"pi_test_{abs(hash(key)) % 10**12}"
    intent.update(
        id=pi,
        client_secret=f"{pi}_secret_abc",
        amount=int(form["amount"]),
        currency=form["currency"],
        customer=form["customer"],
        metadata={k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
        status="requires_payment_method",
        last_payment_error=None,
    )
    return httpx.Response(200, json=intent)


@pytest.fixture
def stripe_payins(stripe_mock: respx.MockRouter) -> respx.MockRouter:
    def customer_response(request: httpx.Request) -> httpx.Response:
        # One customer per idempotency key (customer:{user}), as Stripe would answer:
        # tests that commit must not leave one customer id on two users.
        customer = stripe_object("customer")
        key = request.headers.get("Idempotency-Key", "")
        # alice keeps the fixture's customer id for the shape test
        if key != stripe_key("customer", "alice"):
            customer["id"] = "cus_" + hashlib.sha256(key.encode()).hexdigest()[:14]
        return httpx.Response(200, json=customer)

    stripe_mock.post("/v1/customers", name="customers").mock(side_effect=customer_response)
    stripe_mock.post("/v1/checkout/sessions", name="sessions").mock(
        side_effect=checkout_session_response
    )
    stripe_mock.post("/v1/payment_intents", name="intents").mock(
        side_effect=payment_intent_response
    )
    return stripe_mock


@pytest.fixture
def unique_user() -> str:
    return f"u_{uuid.uuid4().hex[:12]}"


async def order_count(session: AsyncSession, user_id: str) -> int:
    """Orders of one user (other tests commit orders of their own users)."""
    from sqlalchemy import func, select

    from payments_api.orders.models import Order

    return int(
        await session.scalar(
            select(func.count()).select_from(Order).where(Order.user_id == user_id)
        )
        or 0
    )
