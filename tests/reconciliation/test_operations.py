"""The operations surface over a full money flow: business metrics, and logs that never
carry a secret, a token, a client secret or card data."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from typing import Any

import httpx
import respx
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.orders.models import Order
from payments_api.reconciliation.metrics import refresh_gauges
from tests.conftest import TEST_CONNECT_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET
from tests.helpers import make_event, make_token, signed_webhook, stripe_object
from tests.orders.conftest import payment_intent_response
from tests.refunds.helpers import refund_from_request

CARD_NUMBER = "4000056655665556"  # a card number planted in Stripe payloads as a canary


def empty_list(url: str) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": [], "has_more": False, "url": url})


def stripe_for_the_flow(mock: respx.MockRouter) -> None:
    mock.post("/v1/customers").mock(
        return_value=httpx.Response(200, json=stripe_object("customer"))
    )
    mock.post("/v1/payment_intents").mock(side_effect=payment_intent_response)
    charge = stripe_object("charge")
    fee = stripe_object("balance_transaction")
    fee.update(id="txn_ops_fee", amount=3_000, fee=117, net=2_883, currency="usd")
    charge.update(id="ch_ops", balance_transaction=fee, currency="usd", amount=3_000)
    mock.get("/v1/charges/ch_ops").mock(return_value=httpx.Response(200, json=charge))
    mock.post("/v1/refunds").mock(
        side_effect=lambda request: httpx.Response(
            200, json=refund_from_request(request, status="succeeded", currency="usd")
        )
    )
    mock.get("/v1/balance").mock(return_value=httpx.Response(200, json=stripe_object("balance")))
    mock.get("/v1/balance_transactions").mock(return_value=empty_list("/v1/balance_transactions"))
    mock.get("/v1/events").mock(return_value=empty_list("/v1/events"))


class TestFullFlowOperations:
    async def test_logs_hold_request_ids_and_no_secret_and_metrics_count_the_business(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe_mock: respx.MockRouter,
    ) -> None:
        stripe_for_the_flow(stripe_mock)
        # The app's own JSON log handler (installed by create_app), captured.
        [handler] = [
            h
            for h in logging.getLogger().handlers
            if isinstance(h, logging.StreamHandler)
            and isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
        ]
        captured = io.StringIO()
        previous = handler.setStream(captured)
        user = f"ops_{uuid.uuid4().hex[:8]}"
        customer_token = make_token(user, ["customer"])
        admin_token = make_token("admin_ops", ["admin"])
        signatures: list[str] = []

        async def deliver(event: dict[str, Any]) -> httpx.Response:
            body, headers = signed_webhook(event, TEST_WEBHOOK_SECRET)
            signatures.append(headers["Stripe-Signature"])
            return await client.post("/api/v1/webhooks/stripe", content=body, headers=headers)

        try:
            topup = await client.post(
                "/api/v1/topups",
                json={"amount": 3_000, "currency": "usd"},
                headers={
                    "Authorization": f"Bearer {customer_token}",
                    "Idempotency-Key": "ops-topup",
                },
            )
            assert topup.status_code == 201, topup.text
            client_secret = topup.json()["client_secret"]
            assert client_secret
            order = await session.scalar(select(Order).where(Order.user_id == user))
            assert order is not None
            intent = stripe_object("payment_intent")
            intent.update(
                id=order.stripe_payment_intent_id,
                amount=3_000,
                amount_received=3_000,
                currency="usd",
                status="succeeded",
                client_secret=client_secret,
                description=f"card {CARD_NUMBER}",
                latest_charge="ch_ops",
                metadata={"order_id": str(order.id), "user_id": user, "purpose": "topup"},
            )
            assert (
                await deliver(make_event("payment_intent.succeeded", intent))
            ).status_code == 200
            refund = await client.post(
                "/api/v1/admin/refunds",
                json={"order_id": f"ord_{order.id}", "amount": 500},
                headers={"Authorization": f"Bearer {admin_token}", "Idempotency-Key": "ops-r"},
            )
            assert refund.status_code == 201, refund.text
            dispute = stripe_object("dispute")
            dispute.update(
                id=f"dp_ops_{order.id}",
                amount=1_000,
                currency="usd",
                payment_intent=order.stripe_payment_intent_id,
                status="needs_response",
            )
            dispute["evidence"]["uncategorized_text"] = f"card number {CARD_NUMBER}"
            withdrawal = stripe_object("balance_transaction")
            withdrawal.update(
                id="txn_ops_dp", amount=-1_000, fee=1_500, net=-2_500, source=dispute["id"]
            )
            dispute["balance_transactions"] = [withdrawal]
            created = make_event("charge.dispute.created", dispute, created=int(time.time()))
            assert (await deliver(created)).status_code == 200
            bad_signature = await client.post(
                "/api/v1/webhooks/stripe",
                content=b"{}",
                headers={
                    "Stripe-Signature": f"t={int(time.time())},v1=deadbeef",
                    "Content-Type": "application/json",
                },
            )
            assert bad_signature.status_code == 400
            rejected = await client.get(
                "/api/v1/me/balance", headers={"Authorization": "Bearer not.a-valid.token"}
            )
            assert rejected.status_code == 401
            run = await client.post(
                "/api/v1/admin/reconciliation/runs",
                json={"date": "2020-02-02"},
                headers={"Authorization": f"Bearer {admin_token}"},
            )
            assert run.status_code == 201, run.text
        finally:
            handler.setStream(previous)

        logs = captured.getvalue()
        lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
        requests = [line for line in lines if line.get("event") == "request"]
        assert len(requests) >= 7
        assert all(len(line["request_id"]) >= 8 for line in requests)
        forbidden = {
            "customer token": customer_token,
            "admin token": admin_token,
            "token signature": customer_token.rsplit(".", 1)[1],
            "bad token": "not.a-valid.token",
            "Stripe secret key": "sk_test_123",
            "webhook secret": TEST_WEBHOOK_SECRET,
            "connect webhook secret": TEST_CONNECT_WEBHOOK_SECRET,
            "client secret": client_secret,
            "card number": CARD_NUMBER,
            "bearer header": "Bearer ",
        }
        forbidden.update({f"signature {i}": s.split("v1=")[1] for i, s in enumerate(signatures)})
        leaked = [name for name, value in forbidden.items() if value in logs]
        assert leaked == []

        await refresh_gauges(sessionmaker)
        metrics = (await client.get("/metrics")).text
        for sample in (
            'payments_refunds_total{origin="admin",outcome="requested"}',
            'payments_refunds_total{origin="admin",outcome="succeeded"}',
            'payments_dispute_transitions_total{status="needs_response"}',
            'payments_dispute_funds_minor_total{currency="usd",direction="withdrawn"}',
            'payments_reconciliation_runs_total{outcome="clean",trigger="api"}',
            'payments_webhook_events_stored{status="processed",type="payment_intent.succeeded"}',
            "payments_webhook_events_failed_waiting ",
            'payments_reconciliation_mismatches{kind="missing_in_ledger"}',
            "payments_refunds_in_flight ",
            "payments_disputes_open ",
        ):
            assert sample in metrics, sample
