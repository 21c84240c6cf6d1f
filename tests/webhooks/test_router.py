"""The webhook inbox under hostile and unlucky deliveries."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.orders.models import Order
from payments_api.webhooks.models import WebhookEvent
from payments_api.webhooks.repository import WebhookEventRepository
from payments_api.webhooks.service import WebhookService
from tests.conftest import TEST_CONNECT_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET
from tests.factories import create_user
from tests.helpers import auth, make_event, signed_webhook, stripe_object, stripe_signature
from tests.webhooks.malformed import apply_jobs_queued, assert_recorded_malformed

PLATFORM = "/api/v1/webhooks/stripe"
CONNECT = "/api/v1/webhooks/stripe/connect"


async def deliver(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    *,
    path: str = PLATFORM,
    secret: str = TEST_WEBHOOK_SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    body, headers = signed_webhook(event, secret, timestamp=timestamp)
    return await client.post(path, content=body, headers=headers)


async def deliver_body(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    """``body`` as it is, signed as Stripe signs it, to the platform endpoint."""
    return await client.post(
        PLATFORM,
        content=body,
        headers={
            "Stripe-Signature": stripe_signature(body, TEST_WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )


def intent_for(order_id: int, user_id: str, amount: int, pi: str) -> dict[str, Any]:
    intent = stripe_object("payment_intent")
    intent.update(
        id=pi,
        amount=amount,
        amount_received=amount,
        currency="usd",
        status="succeeded",
        latest_charge=None,
        last_payment_error=None,
        metadata={"order_id": str(order_id), "user_id": user_id, "purpose": "topup"},
    )
    return intent


async def pending_order(session: AsyncSession, user_id: str, amount: int = 2_000) -> Order:
    await create_user(session, id=user_id)
    order = Order(
        user_id=user_id,
        purpose="topup",
        channel="payment_intent",
        status="pending",
        amount=amount,
        currency="usd",
        idempotency_key=uuid.uuid4().hex,
        request_fingerprint="x",
        reference={},
    )
    session.add(order)
    await session.flush()
    return order


async def available(client: httpx.AsyncClient, user: str) -> int:
    body = (await client.get("/api/v1/me/balance", headers=auth(user))).json()
    return sum(b["available"] for b in body["balances"] if b["currency"] == "usd")


class TestSignature:
    event = make_event("customer.created", stripe_object("customer"))

    async def test_valid_unknown_type_is_stored_and_acknowledged(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await deliver(client, self.event)
        assert response.status_code == 200
        assert response.json() == {"received": True, "status": "ignored"}
        stored = await session.get(WebhookEvent, self.event["id"])
        assert stored is not None
        assert stored.type == "customer.created"
        assert stored.payload == self.event

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Stripe-Signature": "garbage"},
            {"Stripe-Signature": "t=abc,v1=00"},
            {"Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"},
        ],
        ids=["missing", "garbled", "bad-timestamp", "wrong-signature"],
    )
    async def test_bad_headers(
        self, client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str]
    ) -> None:
        response = await client.post(
            PLATFORM,
            content=json.dumps(self.event).encode(),
            headers={"Content-Type": "application/json", **headers},
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "webhook_signature_invalid"
        assert await session.get(WebhookEvent, self.event["id"]) is None

    @pytest.mark.parametrize("age", [301, -400], ids=["stale", "future"])
    async def test_timestamp_tolerance(
        self, client: httpx.AsyncClient, session: AsyncSession, age: int
    ) -> None:
        response = await deliver(client, self.event, timestamp=int(time.time()) - age)
        assert response.status_code == 400
        assert await session.get(WebhookEvent, self.event["id"]) is None

    async def test_tampered_body(self, client: httpx.AsyncClient, session: AsyncSession) -> None:
        body, headers = signed_webhook(self.event, TEST_WEBHOOK_SECRET)
        tampered = body.replace(b'"livemode": false', b'"livemode": true')
        assert tampered != body
        response = await client.post(PLATFORM, content=tampered, headers=headers)
        assert response.status_code == 400
        assert await session.get(WebhookEvent, self.event["id"]) is None

    async def test_platform_secret_does_not_open_connect(self, client: httpx.AsyncClient) -> None:
        response = await deliver(client, self.event, path=CONNECT, secret=TEST_WEBHOOK_SECRET)
        assert response.status_code == 400
        ok = await deliver(client, self.event, path=CONNECT, secret=TEST_CONNECT_WEBHOOK_SECRET)
        assert ok.status_code == 200

    async def test_rotation_and_multiple_v1(self, app_factory: Any) -> None:
        from pydantic import SecretStr

        app = app_factory(stripe_webhook_secrets=[SecretStr("whsec_old"), SecretStr("whsec_new")])
        body = json.dumps(self.event).encode()
        ts = int(time.time())
        new_sig = stripe_signature(body, "whsec_new", ts).split(",")[1]
        # Stripe sends several v1 during its own secret rotation: any may match.
        header = f"t={ts},v1={'1' * 64},{new_sig}"
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            response = await client.post(
                PLATFORM,
                content=body,
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )
        assert response.status_code == 200

    async def test_unconfigured_endpoint_is_404(self, app_factory: Any) -> None:
        app = app_factory(stripe_connect_webhook_secrets=[])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            response = await deliver(
                client, self.event, path=CONNECT, secret=TEST_CONNECT_WEBHOOK_SECRET
            )
        assert response.status_code == 404

    async def test_signed_non_event_body(self, client: httpx.AsyncClient) -> None:
        response = await deliver_body(client, b'{"hello": "world"}')
        assert response.status_code == 400
        assert response.json()["code"] == "webhook_payload_invalid"

    @pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
    async def test_a_signed_body_with_a_non_json_number_is_refused_and_not_stored(
        self, client: httpx.AsyncClient, session: AsyncSession, constant: str
    ) -> None:
        """Python's json module reads NaN and Infinity; JSON and the inbox's jsonb do
        not: 400 webhook_payload_invalid, nothing stored (it was an unstorable 500)."""
        event = make_event("payment_intent.succeeded", {"id": "pi_nan", "object": "x"})
        event["data"]["object"]["amount"] = 0
        body = json.dumps(event).replace('"amount": 0', f'"amount": {constant}').encode()
        assert constant.encode() in body
        response = await deliver_body(client, body)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "webhook_payload_invalid"
        assert await session.get(WebhookEvent, event["id"]) is None

    async def test_livemode_mismatch_is_ignored(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        order = await pending_order(session, "live-user")
        event = make_event(
            "payment_intent.succeeded",
            intent_for(order.id, "live-user", 2_000, "pi_live"),
            livemode=True,
        )
        response = await deliver(client, event)
        assert response.json()["status"] == "ignored"
        assert await available(client, "live-user") == 0


class TestExactlyOnce:
    async def test_ten_sequential_replays_credit_once(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        order = await pending_order(session, "seq-user")
        event = make_event(
            "payment_intent.succeeded", intent_for(order.id, "seq-user", 2_000, "pi_seq")
        )
        statuses = [(await deliver(client, event)).json()["status"] for _ in range(10)]
        assert statuses == ["processed"] + ["duplicate"] * 9
        assert await available(client, "seq-user") == 2_000

    async def test_ten_concurrent_deliveries_credit_once(
        self, committed_client: httpx.AsyncClient, engine: Any
    ) -> None:
        from sqlalchemy.ext.asyncio import async_sessionmaker

        user = f"conc_{uuid.uuid4().hex[:10]}"
        async with async_sessionmaker(engine).begin() as session:
            order = await pending_order(session, user)
            order_id = order.id
        event = make_event(
            "payment_intent.succeeded", intent_for(order_id, user, 2_000, f"pi_{user}")
        )
        responses = await asyncio.gather(*(deliver(committed_client, event) for _ in range(10)))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        statuses = sorted(r.json()["status"] for r in responses)
        assert statuses.count("processed") == 1
        assert await available(committed_client, user) == 2_000

    async def test_a_new_event_is_stored_and_applied_in_one_transaction(
        self, committed_client: httpx.AsyncClient, engine: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """One BEGIN and one COMMIT for a new event: the inbox row, the credit and the
        "processed" mark commit together. A redelivery is answered from the stored row."""
        from asyncpg.connection import Connection
        from sqlalchemy.ext.asyncio import async_sessionmaker

        user = f"one_{uuid.uuid4().hex[:10]}"
        async with async_sessionmaker(engine).begin() as session:
            order_id = (await pending_order(session, user)).id
        event = make_event(
            "payment_intent.succeeded", intent_for(order_id, user, 2_000, f"pi_{user}")
        )
        sent: list[str] = []
        original = Connection.execute

        async def recording(self: Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            sent.append(query.strip().rstrip(";").upper())
            return await original(self, query, *args, **kwargs)

        prepared: list[str] = []
        original_prepare = Connection.prepare

        async def preparing(self: Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            prepared.append(query.strip().upper())
            return await original_prepare(self, query, *args, **kwargs)

        monkeypatch.setattr(Connection, "execute", recording)
        monkeypatch.setattr(Connection, "prepare", preparing)
        response = await deliver(committed_client, event)
        monkeypatch.undo()
        assert response.json()["status"] == "processed", response.text
        assert [sql.split()[0] for sql in sent if sql.split()[0] in ("BEGIN", "COMMIT")] == [
            "BEGIN",
            "COMMIT",
        ]
        # No savepoint around the handler: a failure rolls back whole (see the next class).
        assert [sql for sql in sent + prepared if "SAVEPOINT" in sql] == []
        assert (await deliver(committed_client, event)).json()["status"] == "duplicate"
        assert await available(committed_client, user) == 2_000


class TestFailureAndRetry:
    async def test_failed_handler_is_recorded_queued_and_replayable(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        await create_user(session, id="late-user")
        # An event for an order we do not know yet (the API response raced the event).
        event = make_event(
            "payment_intent.succeeded", intent_for(987654, "late-user", 2_000, "pi_late")
        )
        response = await deliver(client, event)
        assert response.status_code == 500
        assert response.json()["code"] == "webhook_processing_failed"
        stored = await session.get(WebhookEvent, event["id"], populate_existing=True)
        assert stored is not None
        assert stored.status == "failed"
        assert stored.processed_at is None  # inserted as processed, the failure undid it
        assert stored.attempts == 1
        assert "RetryLater" in (stored.last_error or "")
        assert stored.next_attempt_at is not None
        jobs = await session.scalar(
            text("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'webhooks.apply'")
        )
        assert jobs == 1

        admin = auth("ops", ["admin"])
        failed = (
            await client.get("/api/v1/admin/webhook-events?status=failed", headers=admin)
        ).json()
        assert [e["id"] for e in failed["data"]] == [event["id"]]

        # Stripe retries meanwhile: still failing, still recorded, never dropped.
        assert (await deliver(client, event)).status_code == 500

        order = await pending_order_for_existing_user(session, "late-user")
        await session.execute(
            text("UPDATE orders SET stripe_payment_intent_id = 'pi_late' WHERE id = :id"),
            {"id": order.id},
        )
        replay = await client.post(
            f"/api/v1/admin/webhook-events/{event['id']}/replay", headers=admin
        )
        assert replay.status_code == 200, replay.text
        assert replay.json()["status"] == "processed"
        assert await available(client, "late-user") == 2_000
        replayed = await session.get(WebhookEvent, event["id"], populate_existing=True)
        assert replayed is not None
        assert replayed.processed_at is not None
        audit = (
            await client.get("/api/v1/admin/audit-log?action=webhook_event.replay", headers=admin)
        ).json()["data"]
        assert audit[0]["target_id"] == event["id"]
        assert audit[0]["before"]["status"] == "failed"
        assert audit[0]["after"]["status"] == "processed"
        # the later retry by Stripe (or the worker) finds it done
        assert (await deliver(client, event)).json()["status"] == "duplicate"

    async def test_a_redelivery_that_stored_the_failed_event_first_keeps_it(
        self, client: httpx.AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A new event whose handler failed is stored with its failure in a second
        transaction. When a redelivery stored the event in between, that delivery owns
        the row: this one writes nothing and still answers 500, so Stripe delivers it
        again."""
        await create_user(session, id="twin-user")
        event = make_event(
            "payment_intent.succeeded", intent_for(987655, "twin-user", 2_000, "pi_twin")
        )
        store_failed = WebhookService._store_failed

        async def redelivery_first(
            self: WebhookService, values: dict[str, Any], payload_json: str, *rest: Any
        ) -> Any:
            async with self.sessionmaker.begin() as other:
                await WebhookEventRepository(other).insert_if_new(
                    {
                        **values,
                        "status": "received",
                        "attempts": 0,
                        "last_error": None,
                        "processed_at": None,
                    },
                    payload_json,
                )
            return await store_failed(self, values, payload_json, *rest)

        monkeypatch.setattr(WebhookService, "_store_failed", redelivery_first)
        response = await deliver(client, event)
        assert response.status_code == 500
        assert response.json()["code"] == "webhook_processing_failed"
        stored = await session.get(WebhookEvent, event["id"], populate_existing=True)
        assert stored is not None
        assert (stored.status, stored.attempts, stored.last_error) == ("received", 0, None)
        retries = await session.scalar(
            text(
                "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'webhooks.apply' AND payload = :p"
            ),
            {"p": event["id"].encode()},
        )
        assert retries == 0

    async def test_a_malformed_object_is_recorded_acknowledged_and_never_applied(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        order = await pending_order(session, "malformed-user")
        intent = intent_for(order.id, "malformed-user", 2_000, "pi_malformed")
        intent["amount_received"] = "2000 cents"  # not what Stripe sends: an integer
        event = make_event("payment_intent.succeeded", intent)

        response = await deliver(client, event)

        # Acknowledged (a redelivery would carry the same payload), not applied.
        assert response.status_code == 200, response.text
        assert response.json() == {"received": True, "status": "malformed"}
        await assert_recorded_malformed(
            session,
            event["id"],
            "MalformedStripeObject: PaymentIntent without the expected amount_received",
        )
        assert await apply_jobs_queued(session) == 0
        assert await available(client, "malformed-user") == 0
        status = await session.scalar(
            text("SELECT status FROM orders WHERE id = :id"), {"id": order.id}
        )
        assert status == "pending"
        # Stripe's redelivery of the same payload gets the same answer, nothing more.
        assert (await deliver(client, event)).json()["status"] == "malformed"
        assert await available(client, "malformed-user") == 0

    async def test_admin_routes_need_admin(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/admin/webhook-events", headers=auth("nobody"))
        assert response.status_code == 403


async def pending_order_for_existing_user(session: AsyncSession, user_id: str) -> Order:
    order = Order(
        user_id=user_id,
        purpose="topup",
        channel="payment_intent",
        status="pending",
        amount=2_000,
        currency="usd",
        idempotency_key=uuid.uuid4().hex,
        request_fingerprint="x",
        reference={},
    )
    session.add(order)
    await session.flush()
    return order


@pytest.mark.parametrize("path", [PLATFORM, CONNECT])
def test_the_contract_declares_the_signature_header_required(path: str, app_factory: Any) -> None:
    """Stripe always sends it; the route reads it as optional only so that a missing one
    is our 400 ``webhook_signature_invalid`` (declared), not a generic 422."""
    operation = app_factory().openapi()["paths"][path]["post"]
    [signature] = [p for p in operation["parameters"] if p["name"] == "Stripe-Signature"]
    assert (signature["in"], signature["required"]) == ("header", True)
    assert signature["schema"]["minLength"] == 1
    assert "webhook_signature_invalid" in operation["responses"]["400"]["x-problem-codes"]
