"""Saving a card: SetupIntent, Stripe's event records it, list, default, detach."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.payment_methods.models import PaymentMethod, PaymentMethodSetup
from payments_api.users.models import User
from tests.factories import emitted
from tests.helpers import auth, stripe_key
from tests.payment_methods.conftest import FakeStripeCards, deliver, form_of, setup_succeeded_event


def new_user() -> str:
    return f"card_{uuid.uuid4().hex[:10]}"


async def setup(client: httpx.AsyncClient, user: str, key: str = "s-1") -> httpx.Response:
    return await client.post(
        "/api/v1/me/payment-methods/setup", headers={**auth(user), "Idempotency-Key": key}
    )


async def save_card(
    client: httpx.AsyncClient,
    session: AsyncSession,
    stripe_cards: FakeStripeCards,
    user: str,
    pm_id: str,
    *,
    key: str | None = None,
    fingerprint: str = "fpAAA",
    last4: str = "4242",
) -> httpx.Response:
    response = await setup(client, user, key or f"s-{pm_id}")
    assert response.status_code == 201, response.text
    customer = response.json()["customer"]
    stripe_cards.card(pm_id, customer=customer, fingerprint=fingerprint, last4=last4)
    event = setup_succeeded_event(
        response.json()["setup_intent_id"], customer=customer, user_id=user, payment_method=pm_id
    )
    return await deliver(client, event)


async def listed(client: httpx.AsyncClient, user: str) -> list[dict[str, object]]:
    response = await client.get("/api/v1/me/payment-methods", headers=auth(user))
    assert response.status_code == 200, response.text
    data: list[dict[str, object]] = response.json()["data"]
    return data


class TestSetup:
    async def test_setup_intent_for_the_callers_customer(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        user = new_user()
        response = await setup(client, user)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["client_secret"].startswith(body["setup_intent_id"] + "_secret_")
        assert body["status"] == "requires_payment_method"
        stored = await session.scalar(select(User).where(User.id == user))
        assert stored is not None
        assert body["customer"] == stored.stripe_customer_id
        row = await session.scalar(
            select(PaymentMethodSetup).where(PaymentMethodSetup.user_id == user)
        )
        assert row is not None
        assert row.stripe_setup_intent_id == body["setup_intent_id"]
        [call] = stripe_cards.mock.routes["setup_intents"].calls
        assert call.request.headers["Idempotency-Key"] == stripe_key("setup_intent", row.id)
        form = form_of(call.request)
        assert form["usage"] == "off_session"
        assert form["customer"] == stored.stripe_customer_id
        assert form["automatic_payment_methods[enabled]"] == "true"
        assert form["metadata[user_id]"] == user
        assert form["metadata[setup_id]"] == str(row.id)
        # Nothing saved yet: only Stripe's event saves a card.
        assert await listed(client, user) == []

        again = await setup(client, user)
        assert again.json() == body
        assert stripe_cards.mock.routes["setup_intents"].call_count == 1  # replayed
        other = await setup(client, user, key="s-2")
        assert other.status_code == 201
        second_key = stripe_cards.mock.routes["setup_intents"].calls.last.request.headers[
            "Idempotency-Key"
        ]
        assert second_key != stripe_key("setup_intent", row.id)  # a new setup, a new key
        assert stripe_cards.mock.routes["customers"].call_count == 1  # one customer per user

    async def test_needs_auth_and_key(
        self, client: httpx.AsyncClient, stripe_cards: FakeStripeCards
    ) -> None:
        anonymous = await client.post("/api/v1/me/payment-methods/setup")
        assert anonymous.status_code == 401
        no_key = await client.post("/api/v1/me/payment-methods/setup", headers=auth("k1"))
        assert no_key.json()["code"] == "idempotency_key_required"
        assert stripe_cards.mock.routes["setup_intents"].call_count == 0


class TestSetupSucceeded:
    async def test_event_records_only_brand_last4_expiry_fingerprint(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        user = new_user()
        delivered = await save_card(client, session, stripe_cards, user, "pm_first")
        assert delivered.json()["status"] == "processed", delivered.text
        [card] = await listed(client, user)
        assert card["brand"] == "visa"
        assert card["last4"] == "4242"
        assert (card["exp_month"], card["exp_year"]) == (12, 2031)
        assert card["is_default"] is True  # the first card is the default
        assert card["status"] == "active"
        assert str(card["id"]).startswith("pmt_")
        row = await session.scalar(select(PaymentMethod).where(PaymentMethod.user_id == user))
        assert row is not None
        assert row.fingerprint == "fpAAA"
        assert row.stripe_payment_method_id == "pm_first"
        assert stripe_cards.mock.routes["pm_get"].calls.last.request.url.path == (
            "/v1/payment_methods/pm_first"
        )
        assert [t for t, _ in await emitted(session, user)] == ["payment_method.saved"]

    async def test_redelivery_and_duplicate_fingerprint_store_once(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        user = new_user()
        await save_card(client, session, stripe_cards, user, "pm_one")
        # The same card saved again through a second SetupIntent: not stored twice, and
        # the duplicate PaymentMethod leaves the customer.
        again = await save_card(client, session, stripe_cards, user, "pm_two")
        assert again.json()["status"] == "processed"
        [card] = await listed(client, user)
        assert card["last4"] == "4242"
        assert stripe_cards.detached == ["pm_two"]
        [first] = (
            await session.scalars(select(PaymentMethod).where(PaymentMethod.user_id == user))
        ).all()
        detach_call = stripe_cards.mock.routes["pm_detach"].calls.last.request
        assert detach_call.url.path == "/v1/payment_methods/pm_two/detach"
        assert detach_call.headers["Idempotency-Key"] == stripe_key(
            "payment_method_duplicate", f"{first.id}:pm_two"
        )
        # A different card is stored, and is not the default.
        await save_card(
            client, session, stripe_cards, user, "pm_three", fingerprint="fpBBB", last4="5556"
        )
        cards = await listed(client, user)
        assert [(c["last4"], c["is_default"]) for c in cards] == [("5556", False), ("4242", True)]
        assert [t for t, _ in await emitted(session, user)] == [
            "payment_method.saved",
            "payment_method.saved",
        ]

    async def test_event_naming_another_users_customer_is_ignored(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        victim, attacker = new_user(), new_user()
        await setup(client, victim)
        response = await setup(client, attacker)
        attacker_customer = response.json()["customer"]
        stripe_cards.card("pm_evil", customer=attacker_customer)
        event = setup_succeeded_event(
            response.json()["setup_intent_id"],
            customer=attacker_customer,
            user_id=victim,
            payment_method="pm_evil",
        )
        assert (await deliver(client, event)).status_code == 200
        assert await listed(client, victim) == []
        assert await listed(client, attacker) == []


class TestDefaultAndDetach:
    async def test_default_moves_and_detach_is_idempotent(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        user = new_user()
        await save_card(client, session, stripe_cards, user, "pm_a", fingerprint="fa")
        await save_card(client, session, stripe_cards, user, "pm_b", fingerprint="fb")
        older, newer = sorted(
            (
                await session.scalars(select(PaymentMethod).where(PaymentMethod.user_id == user))
            ).all(),
            key=lambda m: m.id,
        )
        made = await client.post(
            f"/api/v1/me/payment-methods/pmt_{newer.id}/default",
            headers={**auth(user), "Idempotency-Key": "d-1"},
        )
        assert made.status_code == 200, made.text
        assert made.json()["is_default"] is True
        cards = {c["id"]: c["is_default"] for c in await listed(client, user)}
        assert cards == {f"pmt_{newer.id}": True, f"pmt_{older.id}": False}

        removed = await client.delete(
            f"/api/v1/me/payment-methods/pmt_{newer.id}",
            headers={**auth(user), "Idempotency-Key": "x-1"},
        )
        assert removed.status_code == 200, removed.text
        assert removed.json()["status"] == "detached"
        assert stripe_cards.detached == ["pm_b"]
        call = stripe_cards.mock.routes["pm_detach"].calls.last.request
        assert call.headers["Idempotency-Key"] == stripe_key("payment_method_detach", newer.id)
        # The remaining card became the default.
        assert [(c["id"], c["is_default"]) for c in await listed(client, user)] == [
            (f"pmt_{older.id}", True)
        ]
        # Removing it again (a new key: not a replay) answers the same; Stripe already
        # has it detached, which is fine.
        again = await client.delete(
            f"/api/v1/me/payment-methods/pmt_{newer.id}",
            headers={**auth(user), "Idempotency-Key": "x-2"},
        )
        assert again.status_code == 200, again.text
        assert again.json() == removed.json()
        assert stripe_cards.detached == ["pm_b"]
        detached = [t for t, _ in await emitted(session, user)].count("payment_method.detached")
        assert detached == 1
        # A removed card cannot be the default.
        refused = await client.post(
            f"/api/v1/me/payment-methods/pmt_{newer.id}/default",
            headers={**auth(user), "Idempotency-Key": "d-2"},
        )
        assert refused.status_code == 409
        assert refused.json()["code"] == "payment_method_detached"

    async def test_other_users_card_is_not_found(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        owner, other = new_user(), new_user()
        await save_card(client, session, stripe_cards, owner, "pm_owned")
        method = await session.scalar(select(PaymentMethod).where(PaymentMethod.user_id == owner))
        assert method is not None
        for response in (
            await client.delete(
                f"/api/v1/me/payment-methods/pmt_{method.id}",
                headers={**auth(other), "Idempotency-Key": "o-1"},
            ),
            await client.post(
                f"/api/v1/me/payment-methods/pmt_{method.id}/default",
                headers={**auth(other), "Idempotency-Key": "o-2"},
            ),
        ):
            assert response.status_code == 404
            assert response.json()["code"] == "payment_method_not_found"
        # Not a card id at all (Stripe's own id).
        stripe_id = await client.delete(
            "/api/v1/me/payment-methods/pm_owned",
            headers={**auth(other), "Idempotency-Key": "o-3"},
        )
        assert stripe_id.json()["code"] == "payment_method_not_found"
        # /setup is not a card: DELETE there is not allowed.
        setup = await client.delete(
            "/api/v1/me/payment-methods/setup", headers={**auth(other), "Idempotency-Key": "o-4"}
        )
        assert setup.status_code == 405
        assert setup.headers["Allow"] == "POST"
        assert stripe_cards.detached == []
