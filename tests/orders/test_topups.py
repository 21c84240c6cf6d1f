"""PaymentIntent top-ups for mobile: the client confirms, Stripe's event credits."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx
import respx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.orders.models import Order
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.factories import emitted, ledger_invariants
from tests.helpers import auth, make_event, signed_webhook, stripe_key, stripe_object


async def create(
    client: httpx.AsyncClient, user: str, key: str = "t-1", **body: Any
) -> httpx.Response:
    payload = {"amount": 5_000, "currency": "eur", **body}
    return await client.post(
        "/api/v1/topups", json=payload, headers={**auth(user), "Idempotency-Key": key}
    )


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    body, headers = signed_webhook(event, TEST_WEBHOOK_SECRET)
    return await client.post("/api/v1/webhooks/stripe", content=body, headers=headers)


def intent_event(event_type: str, order: Order, **fields: Any) -> dict[str, Any]:
    intent = stripe_object("payment_intent")
    intent.update(
        id=order.stripe_payment_intent_id,
        amount=order.amount,
        currency=order.currency,
        metadata={"order_id": str(order.id), "user_id": order.user_id, "purpose": "topup"},
        **fields,
    )
    return make_event(event_type, intent)


class TestTopups:
    async def test_intent_created_then_credited_with_fee(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        response = await create(client, "mia", payment_method_id="pm_card_visa")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["client_secret"].startswith(body["payment_intent_id"])
        assert body["status"] == "requires_payment_method"
        call = stripe_payins.routes["intents"].calls.last.request
        order = await session.scalar(select(Order).where(Order.user_id == "mia"))
        assert order is not None
        assert body["order_id"] == f"ord_{order.id}"
        assert call.headers["Idempotency-Key"] == stripe_key("payment_intent", order.id)
        form = {k: v[0] for k, v in parse_qs(call.content.decode()).items()}
        assert form["amount"] == "5000"
        assert form["currency"] == "eur"
        assert form["payment_method"] == "pm_card_visa"
        assert form["automatic_payment_methods[enabled]"] == "true"
        assert form["metadata[order_id]"] == str(order.id)
        assert form["customer"].startswith("cus_")

        charge = stripe_object("charge")
        fee = stripe_object("balance_transaction")
        fee.update(id="txn_mia", fee=175, currency="eur", amount=5_000)
        charge.update(id="ch_mia", balance_transaction=fee)
        stripe_payins.get("/v1/charges/ch_mia").mock(return_value=httpx.Response(200, json=charge))
        event = intent_event(
            "payment_intent.succeeded",
            order,
            status="succeeded",
            amount_received=5_000,
            latest_charge="ch_mia",
            last_payment_error=None,
        )
        assert (await deliver(client, event)).json()["status"] == "processed"
        balance = (await client.get("/api/v1/me/balance", headers=auth("mia"))).json()
        assert balance["balances"][0]["available"] == 5_000
        assert balance["balances"][0]["pending"] == 0
        fees = await session.scalar(
            text(
                "SELECT sum(b.balance) FROM ledger_balances b JOIN ledger_accounts a"
                " ON a.id = b.account_id WHERE a.kind = 'processing_fees' AND a.currency = 'eur'"
            )
        )
        assert fees is not None
        assert fees <= -175
        assert await ledger_invariants(session) == []

    async def test_failed_payment_marks_order_and_credits_nothing(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        await create(client, "noah")
        order = await session.scalar(select(Order).where(Order.user_id == "noah"))
        assert order is not None
        error = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        }
        event = intent_event(
            "payment_intent.payment_failed",
            order,
            status="requires_payment_method",
            last_payment_error=error,
        )
        await deliver(client, event)
        api = (await client.get(f"/api/v1/orders/ord_{order.id}", headers=auth("noah"))).json()
        assert api["status"] == "failed"
        assert api["failure_code"] == "insufficient_funds"
        assert "insufficient funds." not in str(api)
        balance = (await client.get("/api/v1/me/balance", headers=auth("noah"))).json()
        assert all(b["available"] == 0 for b in balance["balances"])
        await deliver(client, event)  # redelivered: no second event
        assert await emitted(session, "noah") == [("topup.failed", api)]

    async def test_limits(self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter) -> None:
        small = await create(client, "olga", amount=999)
        assert small.json()["code"] == "amount_out_of_range"
        bad_pm = await create(client, "olga", key="t-2", payment_method_id="card_123")
        assert bad_pm.json()["code"] == "validation_error"
        assert stripe_payins.routes["intents"].call_count == 0
