"""Pausing payment collection, and subscriptions made outside this service."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import create_user, emitted, ledger_invariants
from tests.helpers import auth, stripe_key
from tests.subscriptions.conftest import (
    FakeBilling,
    fee_routes,
    form_of,
    invoice,
    seed_plans,
    send,
    subscribe,
    subscription,
    unique_user,
)
from tests.subscriptions.test_subscriptions import available, ledger_rows, mine, the_row


def with_pause(obj: dict[str, Any], behavior: str | None, resumes_at: int | None = None) -> Any:
    obj["pause_collection"] = (
        {"behavior": behavior, "resumes_at": resumes_at} if behavior is not None else None
    )
    return obj


class TestPause:
    async def test_pause_then_unpause_with_keys_and_entitlement(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        created = (await subscribe(client, user, "price_pro")).json()
        row = await the_row(session, user)
        sub = str(row.stripe_subscription_id)

        def answer(request: httpx.Request) -> httpx.Response:
            form = form_of(request)
            state = subscription(
                sub,
                status="active",
                price_id="price_pro",
                our_id=row.id,
                user=user,
                item_id=row.stripe_item_id,
            )
            behavior = form.get("pause_collection[behavior]")
            resumes = form.get("pause_collection[resumes_at]")
            return httpx.Response(
                200, json=with_pause(state, behavior, int(resumes) if resumes else None)
            )

        route = billing.router.post(f"/v1/subscriptions/{sub}", name="update").mock(
            side_effect=answer
        )
        resumes_at = int(time.time()) + 30 * 86400
        paused = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/pause",
            json={"resumes_at": resumes_at},
            headers={**auth(user), "Idempotency-Key": "pause-1"},
        )
        assert paused.status_code == 200, paused.text
        body = paused.json()
        assert body["status"] == "active"
        assert body["entitled"] is False
        assert body["pause_collection"]["behavior"] == "void"
        call = route.calls.last.request
        assert form_of(call) == {
            "pause_collection[behavior]": "void",
            "pause_collection[resumes_at]": str(resumes_at),
        }
        assert call.headers["Idempotency-Key"].startswith(
            stripe_key("subscription_update", f"{row.id}-")
        )
        replay = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/pause",
            json={"resumes_at": resumes_at},
            headers={**auth(user), "Idempotency-Key": "pause-1"},
        )
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert route.call_count == 1

        unpaused = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/unpause",
            headers={**auth(user), "Idempotency-Key": "unpause-1"},
        )
        assert unpaused.status_code == 200, unpaused.text
        assert unpaused.json()["pause_collection"] is None
        assert unpaused.json()["entitled"] is True
        assert route.calls.last.request.content == b"pause_collection="
        again = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/unpause",
            headers={**auth(user), "Idempotency-Key": "unpause-2"},
        )
        assert again.status_code == 409
        assert again.json()["code"] == "subscription_not_paused"
        past = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/pause",
            json={"resumes_at": int(time.time()) - 60},
            headers={**auth(user), "Idempotency-Key": "pause-past"},
        )
        assert past.status_code == 422
        assert past.json()["code"] == "subscription_pause_invalid"
        updates = [p for t, p in await emitted(session, user) if t == "subscription.updated"]
        assert [u["pause_collection"] is not None for u in updates] == [True, False]

    async def test_pause_made_in_the_dashboard_arrives_by_webhook(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        await subscribe(client, user, "price_pro")
        row = await the_row(session, user)
        state = subscription(
            str(row.stripe_subscription_id),
            status="active",
            price_id="price_pro",
            our_id=row.id,
            user=user,
            item_id=row.stripe_item_id,
        )
        later = int(time.time()) + 5
        await send(
            client,
            "customer.subscription.updated",
            with_pause(dict(state), "keep_as_draft"),
            created=later,
        )
        assert (await mine(client, user))["pause_collection"]["behavior"] == "keep_as_draft"
        # an older event (before the pause) changes nothing
        await send(
            client,
            "customer.subscription.updated",
            with_pause(dict(state), None),
            created=later - 3,
        )
        assert (await mine(client, user))["entitled"] is False
        await send(
            client,
            "customer.subscription.resumed",
            with_pause(dict(state), None),
            created=later + 1,
        )
        assert (await mine(client, user))["entitled"] is True


class TestAdoption:
    async def test_dashboard_subscription_of_a_known_customer_is_adopted_and_booked(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        customer = f"cus_known_{uuid.uuid4().hex[:8]}"
        user = await create_user(session, stripe_customer_id=customer)
        await session.commit()
        stripe_sub = f"sub_dash_{uuid.uuid4().hex[:8]}"
        obj = subscription(
            stripe_sub,
            status="active",
            price_id="price_pro",
            our_id=0,
            user=user.id,
            customer=customer,
        )
        obj["metadata"] = {}
        for _ in range(2):
            await send(client, "customer.subscription.created", obj)
        listed = (await client.get("/api/v1/me/subscriptions", headers=auth(user.id))).json()
        assert len(listed["data"]) == 1
        adopted = listed["data"][0]
        assert (adopted["origin"], adopted["status"], adopted["entitled"]) == (
            "stripe",
            "active",
            True,
        )
        assert adopted["plan"]["price"] == "price_pro"
        assert adopted["stripe_subscription_id"] == stripe_sub

        paid = invoice("in_dash_1", stripe_sub=stripe_sub, amount=1900)
        paid["customer"] = customer
        fee_routes(billing.router, "in_dash_1", fee=85, charge="ch_dash_1")
        for _ in range(2):
            await send(client, "invoice.paid", paid)
        assert [t for t, _ in await ledger_rows(session, "in_dash_1")] == [
            "subscription_payment",
            "processing_fee",
            "subscription_credit",
        ]
        assert await available(client, user.id) == 500

        canceled = dict(obj, status="canceled")
        await send(client, "customer.subscription.deleted", canceled, created=int(time.time()) + 5)
        assert (await mine(client, user.id))["status"] == "canceled"
        assert [t for t, _ in await emitted(session, user.id)] == [
            "subscription.created",
            "invoice.paid",
            "subscription.updated",
            "subscription.canceled",
        ]
        assert await ledger_invariants(session) == []

    async def test_invoice_before_the_subscription_event_adopts_from_stripe(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        customer = f"cus_known_{uuid.uuid4().hex[:8]}"
        user = await create_user(session, stripe_customer_id=customer)
        await session.commit()
        stripe_sub = f"sub_dash_{uuid.uuid4().hex[:8]}"
        obj = subscription(
            stripe_sub,
            status="active",
            price_id="price_pro",
            our_id=0,
            user=user.id,
            customer=customer,
        )
        obj["metadata"] = {}
        retrieve = billing.router.get(f"/v1/subscriptions/{stripe_sub}").mock(
            return_value=httpx.Response(200, json=obj)
        )
        paid = invoice("in_dash_2", stripe_sub=stripe_sub, amount=1900)
        paid["customer"] = customer
        fee_routes(billing.router, "in_dash_2", fee=85, charge="ch_dash_2")
        await send(client, "invoice.paid", paid)
        assert retrieve.call_count == 1
        assert (await mine(client, user.id))["origin"] == "stripe"
        assert await available(client, user.id) == 500
        await send(client, "customer.subscription.created", obj)
        count = await session.scalar(
            text("SELECT count(*) FROM subscriptions WHERE user_id = :u"), {"u": user.id}
        )
        assert count == 1

    async def test_unknown_customer_is_kept_for_review_and_moves_no_money(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        stripe_sub = f"sub_stranger_{uuid.uuid4().hex[:8]}"
        obj = subscription(
            stripe_sub,
            status="active",
            price_id="price_pro",
            our_id=0,
            user="nobody",
            customer="cus_stranger",
        )
        obj["metadata"] = {}
        response = await send(client, "customer.subscription.created", obj)
        assert response.status_code == 200
        paid = invoice("in_stranger", stripe_sub=stripe_sub, amount=1900)
        paid["customer"] = "cus_stranger"
        await send(client, "invoice.paid", paid)
        kept = (
            await session.execute(
                text(
                    "SELECT stripe_customer_id, status, stripe_price_id, last_event_type"
                    " FROM unclaimed_subscriptions WHERE stripe_subscription_id = :s"
                ),
                {"s": stripe_sub},
            )
        ).all()
        assert [tuple(r) for r in kept] == [
            ("cus_stranger", "active", "price_pro", "customer.subscription.created")
        ]
        assert await ledger_rows(session, "in_stranger") == []
        listed = await client.get(
            "/api/v1/admin/subscriptions/unclaimed", headers=auth("admin_x", ["admin"])
        )
        assert listed.status_code == 200, listed.text
        assert stripe_sub in [s["stripe_subscription_id"] for s in listed.json()["data"]]
