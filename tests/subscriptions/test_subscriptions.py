"""Subscribe, lifecycle from Stripe's events, money per paid invoice, manage."""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.subscriptions.models import Subscription
from payments_api.webhooks.models import WebhookEvent
from tests.factories import emitted, ledger_invariants
from tests.helpers import auth, make_event, stripe_key
from tests.subscriptions.conftest import (
    FakeBilling,
    deliver,
    fee_routes,
    form_of,
    invoice,
    seed_plans,
    send,
    subscribe,
    subscription,
    unique_user,
)


async def the_row(session: AsyncSession, user: str) -> Subscription:
    row = await session.scalar(
        select(Subscription)
        .where(Subscription.user_id == user)
        .order_by(Subscription.id.desc())
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def mine(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    body = (await client.get("/api/v1/me/subscriptions", headers=auth(user))).json()
    assert len(body["data"]) >= 1
    first: dict[str, Any] = body["data"][0]
    return first


async def ledger_rows(session: AsyncSession, invoice_id: str) -> list[tuple[str, str]]:
    rows = await session.execute(
        text(
            "SELECT type, cause_key FROM ledger_transactions"
            " WHERE cause_key LIKE :pattern ORDER BY id"
        ),
        {"pattern": f"%{invoice_id}%"},
    )
    return [(r.type, r.cause_key) for r in rows]


async def available(client: httpx.AsyncClient, user: str) -> int:
    body = (await client.get("/api/v1/me/balance", headers=auth(user))).json()
    return int(next((b["available"] for b in body["balances"] if b["currency"] == "usd"), 0))


def stripe_state(row: Subscription, status: str, **extra: Any) -> dict[str, Any]:
    assert row.stripe_subscription_id is not None
    return subscription(
        row.stripe_subscription_id,
        status=status,
        price_id=extra.pop("price_id", row.stripe_price_id),
        our_id=row.id,
        user=row.user_id,
        item_id=row.stripe_item_id,
        **extra,
    )


class TestSubscribe:
    async def test_without_sca_is_active_at_once_with_our_keys(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        response = await subscribe(client, user, "price_pro", payment_method="pm_card_visa")
        assert response.status_code == 201, response.text
        body = response.json()
        row = await the_row(session, user)
        assert body["id"] == f"subs_{row.id}"
        assert body["status"] == "active"
        assert body["entitled"] is True
        assert body["client_secret"] is None
        assert body["plan"]["price"] == "price_pro"
        assert body["plan"]["monthly_credit"] == 500

        call = billing.router.routes["subscriptions"].calls.last.request
        assert call.url.path == "/v1/subscriptions"
        assert call.headers["Idempotency-Key"] == stripe_key("subscription", row.id)
        form = form_of(call)
        assert form["items[0][price]"] == "price_pro"
        assert form["payment_behavior"] == "default_incomplete"
        assert form["default_payment_method"] == "pm_card_visa"
        assert form["payment_settings[save_default_payment_method]"] == "on_subscription"
        assert form["expand[0]"] == "latest_invoice.confirmation_secret"
        assert form["metadata[subscription_id]"] == str(row.id)
        assert form["metadata[user_id]"] == user
        assert "trial_from_plan" not in form
        customer_call = billing.router.routes["customers"].calls.last.request
        assert customer_call.headers["Idempotency-Key"] == stripe_key("customer", user)
        user_row = await session.scalar(
            text("SELECT stripe_customer_id FROM users WHERE id = :id"), {"id": user}
        )
        assert form["customer"] == user_row

        # the same key replays; another subscription in the same family is refused
        again = await subscribe(client, user, "price_pro", payment_method="pm_card_visa")
        assert billing.router.routes["subscriptions"].call_count == 1
        assert again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == body
        second = await subscribe(client, user, "price_basic", key="sub-key-2")
        assert second.status_code == 409
        assert second.json()["code"] == "subscription_exists"
        assert [t for t, _ in await emitted(session, user)] == ["subscription.created"]

    async def test_one_per_family_can_be_turned_off(
        self, app_factory: Any, billing: FakeBilling
    ) -> None:
        app = app_factory(subscriptions_one_per_family=False)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await seed_plans(client)
            user = unique_user()
            assert (await subscribe(client, user, "price_pro")).status_code == 201
            assert (await subscribe(client, user, "price_basic", key="k2")).status_code == 201

    async def test_unknown_or_archived_price_is_a_problem(
        self, client: httpx.AsyncClient, billing: FakeBilling
    ) -> None:
        await seed_plans(client)
        response = await subscribe(client, unique_user(), "price_nope")
        assert response.status_code == 422
        assert response.json()["code"] == "plan_not_found"
        assert billing.router.routes["subscriptions"].call_count == 0

    async def test_with_sca_returns_the_client_secret_then_stripe_activates(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        billing.status = "incomplete"
        user = unique_user()
        response = await subscribe(client, user, "price_basic")
        assert response.status_code == 201, response.text
        body = response.json()
        row = await the_row(session, user)
        assert body["status"] == "incomplete"
        assert body["entitled"] is False
        assert body["client_secret"] == f"pi_first_{row.id}_secret_abc"
        assert body["client_secret_type"] == "payment_intent"

        # the customer authenticates; Stripe pays the invoice and activates
        first = invoice(
            f"in_first_{row.id}",
            stripe_sub=str(row.stripe_subscription_id),
            amount=900,
            reason="subscription_create",
            our_id=row.id,
        )
        fee_routes(billing.router, first["id"], fee=56)
        await send(client, "invoice.paid", first)
        await send(client, "customer.subscription.updated", stripe_state(row, "active"))
        now = await mine(client, user)
        assert now["status"] == "active"
        assert now["entitled"] is True
        assert await ledger_rows(session, first["id"]) == [
            ("subscription_payment", f"stripe:invoice:{first['id']}"),
            ("processing_fee", f"stripe:fee:txn_{first['id']}"),
        ]
        assert await available(client, user) == 0  # the basic plan gives no credit


class TestTrial:
    async def test_trial_then_notice_then_active(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        response = await subscribe(client, user, "price_trial")
        assert response.status_code == 201, response.text
        body = response.json()
        row = await the_row(session, user)
        form = form_of(billing.router.routes["subscriptions"].calls.last.request)
        assert form["trial_from_plan"] == "true"
        assert body["status"] == "trialing"
        assert body["entitled"] is True
        assert body["trial_end"] is not None
        assert body["client_secret"] == f"seti_{row.id}_secret_xyz"
        assert body["client_secret_type"] == "setup_intent"

        trial_end = int(time.time()) + 3 * 86400
        await send(
            client,
            "customer.subscription.trial_will_end",
            stripe_state(row, "trialing", trial_end=trial_end),
        )
        await send(
            client,
            "customer.subscription.trial_will_end",
            stripe_state(row, "trialing", trial_end=trial_end),
        )
        zero = invoice("in_trial_end", stripe_sub=str(row.stripe_subscription_id), amount=0)
        await send(client, "invoice.paid", zero)
        await send(client, "customer.subscription.updated", stripe_state(row, "active"))
        assert (await mine(client, user))["status"] == "active"
        types = [t for t, _ in await emitted(session, user)]
        assert types == [
            "subscription.created",
            "subscription.trial_will_end",
            "invoice.paid",
            "subscription.updated",
        ]
        # a $0 invoice moves no money and gives no credit
        assert await ledger_rows(session, "in_trial_end") == []


class TestRenewals:
    async def test_paid_renewal_books_revenue_fee_and_credit_once(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        await subscribe(client, user, "price_pro")
        row = await the_row(session, user)
        renewal = invoice("in_renewal_1", stripe_sub=str(row.stripe_subscription_id), amount=1900)
        payments, charges = fee_routes(billing.router, "in_renewal_1", fee=85)
        for _ in range(3):  # Stripe delivers it three times, as three events
            await send(client, "invoice.paid", renewal)
        assert await ledger_rows(session, "in_renewal_1") == [
            ("subscription_payment", "stripe:invoice:in_renewal_1"),
            ("processing_fee", "stripe:fee:txn_in_renewal_1"),
            ("subscription_credit", "subscription_credit:in_renewal_1"),
        ]
        assert payments.call_count == 1
        assert charges.call_count == 1
        assert await available(client, user) == 500
        postings = await session.execute(
            text(
                "SELECT a.kind, p.amount FROM ledger_postings p"
                " JOIN ledger_accounts a ON a.id = p.account_id"
                " JOIN ledger_transactions t ON t.id = p.transaction_id"
                " WHERE t.cause_key = 'stripe:invoice:in_renewal_1' ORDER BY p.amount"
            )
        )
        assert [(r.kind, r.amount) for r in postings] == [
            ("stripe_balance", -1900),
            ("sales", 1900),
        ]
        paid = [p for t, p in await emitted(session, user) if t == "invoice.paid"]
        assert len(paid) == 1
        assert paid[0]["amount_paid"] == 1900
        assert paid[0]["credited_amount"] == 500
        assert paid[0]["subscription_id"] == f"subs_{row.id}"
        assert await ledger_invariants(session) == []

    async def test_failed_renewal_past_due_within_grace_then_recovered(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        await subscribe(client, user, "price_basic")
        row = await the_row(session, user)
        t0 = int(time.time())
        failed = invoice(
            "in_fail_1", stripe_sub=str(row.stripe_subscription_id), amount=900, status="open"
        )
        await send(client, "invoice.payment_failed", failed, created=t0 + 1)
        await send(
            client, "customer.subscription.updated", stripe_state(row, "past_due"), created=t0 + 1
        )
        now = await mine(client, user)
        assert now["status"] == "past_due"
        assert now["entitled"] is True  # within the grace period
        assert now["past_due_since"] is not None

        retried = {**failed, "attempt_count": 2}
        await send(client, "invoice.payment_action_required", retried, created=t0 + 2)
        fee_routes(billing.router, "in_fail_1", fee=56)
        await send(
            client,
            "invoice.paid",
            invoice("in_fail_1", stripe_sub=str(row.stripe_subscription_id), amount=900),
            created=t0 + 3,
        )
        await send(
            client, "customer.subscription.updated", stripe_state(row, "active"), created=t0 + 3
        )
        now = await mine(client, user)
        assert now["status"] == "active"
        assert now["past_due_since"] is None
        types = [t for t, _ in await emitted(session, user)]
        assert types == [
            "subscription.created",
            "invoice.payment_failed",
            "subscription.updated",
            "invoice.payment_action_required",
            "invoice.paid",
            "subscription.updated",
        ]

    async def test_past_due_without_grace_is_not_entitled(
        self, app_factory: Any, billing: FakeBilling, session: AsyncSession
    ) -> None:
        app = app_factory(subscriptions_past_due_grace_hours=0)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await seed_plans(client)
            user = unique_user()
            await subscribe(client, user, "price_basic")
            row = await the_row(session, user)
            await send(client, "customer.subscription.updated", stripe_state(row, "past_due"))
            now = await mine(client, user)
            assert (now["status"], now["entitled"]) == ("past_due", False)

    async def test_unpaid_then_canceled_and_never_back(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        await subscribe(client, user, "price_basic")
        row = await the_row(session, user)
        t0 = int(time.time())
        await send(
            client, "customer.subscription.updated", stripe_state(row, "past_due"), created=t0 + 1
        )
        await send(
            client, "customer.subscription.updated", stripe_state(row, "unpaid"), created=t0 + 2
        )
        now = await mine(client, user)
        assert (now["status"], now["entitled"]) == ("unpaid", False)
        await send(
            client, "customer.subscription.deleted", stripe_state(row, "canceled"), created=t0 + 3
        )
        # a late, older "active" changes nothing
        await send(client, "customer.subscription.updated", stripe_state(row, "active"), created=t0)
        now = await mine(client, user)
        assert (now["status"], now["entitled"]) == ("canceled", False)
        assert now["ended_at"] is not None
        types = [t for t, _ in await emitted(session, user)]
        assert types.count("subscription.canceled") == 1
        # the family's place is free again
        assert (await subscribe(client, user, "price_pro", key="again")).status_code == 201


class TestOrder:
    async def test_updated_before_created(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        billing.status = "incomplete"
        user = unique_user()
        await subscribe(client, user, "price_basic")
        row = await the_row(session, user)
        t0 = int(time.time()) + 5
        await send(
            client, "customer.subscription.updated", stripe_state(row, "active"), created=t0 + 1
        )
        await send(
            client, "customer.subscription.created", stripe_state(row, "incomplete"), created=t0
        )
        assert (await mine(client, user))["status"] == "active"
        # the same second: the creation's snapshot never undoes what followed
        await send(
            client, "customer.subscription.created", stripe_state(row, "incomplete"), created=t0 + 1
        )
        assert (await mine(client, user))["status"] == "active"

    async def test_an_event_before_our_row_commits_is_retried(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        early = subscription(
            "sub_early", status="active", price_id="price_basic", our_id=987_654_321, user=user
        )
        event = make_event("customer.subscription.created", early)
        response = await deliver(client, event)
        assert response.status_code == 500
        stored = await session.get(WebhookEvent, event["id"], populate_existing=True)
        assert stored is not None
        assert "RetryLater" in (stored.last_error or "")
        paid = invoice("in_early", stripe_sub="sub_early", amount=900, our_id=987_654_321)
        assert (await deliver(client, make_event("invoice.paid", paid))).status_code == 500

    async def test_events_of_subscriptions_we_do_not_know_are_ignored(
        self, client: httpx.AsyncClient
    ) -> None:
        other = subscription(
            "sub_elsewhere", status="active", price_id="price_x", our_id=1, user="x"
        )
        other["metadata"] = {}
        other["customer"] = "cus_nobody"
        response = await send(client, "customer.subscription.updated", other)
        assert response.status_code == 200


class TestManage:
    async def test_cancel_at_period_end_then_resume(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        created = (await subscribe(client, user, "price_pro")).json()
        row = await the_row(session, user)
        sub = str(row.stripe_subscription_id)
        route = billing.router.post(f"/v1/subscriptions/{sub}", name="update")
        route.mock(
            side_effect=lambda r: httpx.Response(
                200,
                json=stripe_state(
                    row, "active", cancel_at_period_end=form_of(r)["cancel_at_period_end"] == "true"
                ),
            )
        )
        response = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/cancel",
            json={"at_period_end": True},
            headers={**auth(user), "Idempotency-Key": "cancel-1"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["cancel_at_period_end"] is True
        assert response.json()["entitled"] is True
        call = route.calls.last.request
        assert form_of(call) == {"cancel_at_period_end": "true"}
        assert call.headers["Idempotency-Key"].startswith(
            stripe_key("subscription_update", f"{row.id}-")
        )

        response = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/resume",
            headers={**auth(user), "Idempotency-Key": "resume-1"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["cancel_at_period_end"] is False
        assert form_of(route.calls.last.request) == {"cancel_at_period_end": "false"}
        assert (
            route.calls[0].request.headers["Idempotency-Key"]
            != (route.calls[1].request.headers["Idempotency-Key"])
        )
        again = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/resume",
            headers={**auth(user), "Idempotency-Key": "resume-2"},
        )
        assert again.status_code == 409
        assert again.json()["code"] == "subscription_not_resumable"

    async def test_cancel_now(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        created = (await subscribe(client, user, "price_pro")).json()
        row = await the_row(session, user)
        route = billing.router.delete(f"/v1/subscriptions/{row.stripe_subscription_id}").mock(
            return_value=httpx.Response(200, json=stripe_state(row, "canceled"))
        )
        response = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/cancel",
            json={"at_period_end": False},
            headers={**auth(user), "Idempotency-Key": "cancel-now"},
        )
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["entitled"]) == ("canceled", False)
        assert route.calls.last.request.headers["Idempotency-Key"].startswith(
            stripe_key("subscription_cancel", f"{row.id}-")
        )
        assert "subscription.canceled" in [t for t, _ in await emitted(session, user)]

    async def test_not_mine_is_not_found(
        self, client: httpx.AsyncClient, billing: FakeBilling
    ) -> None:
        await seed_plans(client)
        created = (await subscribe(client, unique_user(), "price_pro")).json()
        response = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/cancel",
            json={},
            headers={**auth("mallory"), "Idempotency-Key": "x"},
        )
        assert response.status_code == 404
        assert response.json()["code"] == "subscription_not_found"

    async def test_change_plan_with_proration_preview(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        await seed_plans(client)
        user = unique_user()
        created = (await subscribe(client, user, "price_basic")).json()
        row = await the_row(session, user)
        preview_invoice = invoice(
            "upcoming", stripe_sub=str(row.stripe_subscription_id), amount=1500, status="draft"
        )
        preview_invoice["lines"]["data"] = [
            {
                **preview_invoice["lines"]["data"][0],
                "amount": -450,
                "description": "Unused time on Basic",
                "parent": {
                    "type": "subscription_item_details",
                    "subscription_item_details": {"proration": True},
                },
            },
            {
                **preview_invoice["lines"]["data"][0],
                "amount": 950,
                "description": "Remaining time on Pro",
                "parent": {
                    "type": "subscription_item_details",
                    "subscription_item_details": {"proration": True},
                },
            },
            {
                **preview_invoice["lines"]["data"][0],
                "amount": 1900,
                "description": "Pro",
                "parent": {
                    "type": "subscription_item_details",
                    "subscription_item_details": {"proration": False},
                },
            },
        ]
        preview_invoice["amount_due"] = 2400
        preview_route = billing.router.post("/v1/invoices/create_preview").mock(
            return_value=httpx.Response(200, json=preview_invoice)
        )
        response = await client.get(
            f"/api/v1/me/subscriptions/{created['id']}/preview",
            params={"price": "price_pro"},
            headers=auth(user),
        )
        assert response.status_code == 200, response.text
        preview = response.json()
        assert preview["amount_due"] == 2400
        assert [(line["amount"], line["proration"]) for line in preview["lines"]] == [
            (-450, True),
            (950, True),
            (1900, False),
        ]
        form = form_of(preview_route.calls.last.request)
        assert form["subscription"] == row.stripe_subscription_id
        assert form["subscription_details[items][0][id]"] == row.stripe_item_id
        assert form["subscription_details[items][0][price]"] == "price_pro"
        assert form["subscription_details[proration_behavior]"] == "create_prorations"
        assert form["subscription_details[proration_date]"] == str(preview["proration_date"])

        update = billing.router.post(f"/v1/subscriptions/{row.stripe_subscription_id}").mock(
            return_value=httpx.Response(200, json=stripe_state(row, "active", price_id="price_pro"))
        )
        response = await client.post(
            f"/api/v1/me/subscriptions/{created['id']}/change",
            json={"price": "price_pro", "proration_date": preview["proration_date"]},
            headers={**auth(user), "Idempotency-Key": "change-1"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["plan"]["price"] == "price_pro"
        form = form_of(update.calls.last.request)
        assert form["items[0][id]"] == row.stripe_item_id
        assert form["items[0][price]"] == "price_pro"
        assert form["proration_behavior"] == "create_prorations"
        assert form["proration_date"] == str(preview["proration_date"])

        same = await client.get(
            f"/api/v1/me/subscriptions/{created['id']}/preview",
            params={"price": "price_pro"},
            headers=auth(user),
        )
        assert same.status_code == 422
        assert same.json()["code"] == "plan_change_invalid"

    async def test_archived_price_stays_readable_for_its_subscribers(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        from tests.subscriptions.conftest import price

        await seed_plans(client)
        user = unique_user()
        created = (await subscribe(client, user, "price_pro")).json()
        await send(client, "price.updated", price("price_pro", 1900, credit=500, active=False))
        got = (
            await client.get(f"/api/v1/me/subscriptions/{created['id']}", headers=auth(user))
        ).json()
        assert got["plan"]["price"] == "price_pro"
        assert got["plan"]["active"] is False
        plans = (await client.get("/api/v1/plans", headers=auth(user))).json()["data"]
        assert "price_pro" not in [p["price"] for p in plans]
