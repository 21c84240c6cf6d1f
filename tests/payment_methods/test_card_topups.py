"""Top-ups that complete: a saved card confirmed by the server, on- and off-session,
3-D Secure as ``requires_action``, declines as stable codes, the service role."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.orders.models import Order
from payments_api.payment_methods.models import PaymentMethod
from tests.factories import emitted, ledger_invariants
from tests.helpers import auth, make_event, stripe_key, stripe_object
from tests.payment_methods.conftest import FakeStripeCards, deliver, form_of
from tests.payment_methods.test_saved_cards import save_card

# What the respx Stripe answers a confirmation with, by the card's PaymentMethod id.
OUTCOMES: dict[str, tuple[str, str | None]] = {
    "pm_ok": ("succeeded", None),
    "pm_3ds": ("requires_action", None),
    "pm_auth": ("requires_payment_method", "authentication_required"),
    "pm_poor": ("requires_payment_method", "insufficient_funds"),
    "pm_stolen": ("requires_payment_method", "stolen_card"),
}


def confirm_response(request: httpx.Request) -> httpx.Response:
    """Stripe's answer to POST /v1/payment_intents with confirm=true."""
    form = form_of(request)
    key = request.headers.get("Idempotency-Key", "")
    pi = f"pi_card_{abs(hash(key)) % 10**12}"
    status, decline = OUTCOMES[form["payment_method"]]
    intent = stripe_object("payment_intent")
    intent.update(
        id=pi,
        client_secret=f"{pi}_secret_abc",
        amount=int(form["amount"]),
        currency=form["currency"],
        customer=form["customer"],
        payment_method=form["payment_method"],
        metadata={k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
        status=status,
        next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {}}
        if status == "requires_action"
        else None,
        last_payment_error=None,
    )
    if decline is None:
        return httpx.Response(200, json=intent)
    error = {
        "type": "card_error",
        "code": "authentication_required"
        if decline == "authentication_required"
        else "card_declined",
        "decline_code": decline,
        "message": "Your card was declined. 4000000000009995",
        "payment_intent": {**intent, "last_payment_error": {"decline_code": decline}},
    }
    return httpx.Response(402, json={"error": error})


async def saved(
    client: httpx.AsyncClient,
    session: AsyncSession,
    stripe_cards: FakeStripeCards,
    user: str,
    pm_id: str,
) -> PaymentMethod:
    fingerprint = f"fp_{pm_id}"
    await save_card(client, session, stripe_cards, user, pm_id, fingerprint=fingerprint)
    method = await session.scalar(
        select(PaymentMethod).where(PaymentMethod.stripe_payment_method_id == pm_id)
    )
    assert method is not None
    return method


async def topup(
    client: httpx.AsyncClient, user: str, key: str, roles: list[str] | None = None, **body: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/topups",
        json={"amount": 5_000, "currency": "eur", **body},
        headers={**auth(user, roles), "Idempotency-Key": key},
    )


async def order_of(session: AsyncSession, user: str) -> Order:
    order = await session.scalar(
        select(Order).where(Order.user_id == user).order_by(Order.id.desc()).limit(1)
    )
    assert order is not None
    await session.refresh(order)
    return order


def new_user() -> str:
    return f"tu_{uuid.uuid4().hex[:10]}"


class TestSavedCardOnSession:
    async def test_confirmed_by_the_server_then_credited_by_the_event(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        stripe_cards.mock.routes["intents"].mock(side_effect=confirm_response)
        user = new_user()
        card = await saved(client, session, stripe_cards, user, "pm_ok")
        response = await topup(client, user, "t-1", payment_method=f"pmt_{card.id}")
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "succeeded"
        assert response.json()["next_action"] is None
        order = await order_of(session, user)
        call = stripe_cards.mock.routes["intents"].calls.last.request
        assert call.headers["Idempotency-Key"] == stripe_key("payment_intent", order.id)
        form = form_of(call)
        assert form["payment_method"] == "pm_ok"
        assert form["confirm"] == "true"
        assert "off_session" not in form
        assert form["automatic_payment_methods[allow_redirects]"] == "never"
        assert form["metadata[order_id]"] == str(order.id)
        # Stripe's answer is not money: only the event credits.
        assert order.status == "pending"
        balance = (await client.get("/api/v1/me/balance", headers=auth(user))).json()
        assert balance["balances"][0]["available"] == 0
        intent = stripe_object("payment_intent")
        intent.update(
            id=order.stripe_payment_intent_id,
            amount=5_000,
            amount_received=5_000,
            currency="eur",
            status="succeeded",
            latest_charge=None,
            metadata={"order_id": str(order.id), "user_id": user, "purpose": "topup"},
        )
        await deliver(client, make_event("payment_intent.succeeded", intent))
        balance = (await client.get("/api/v1/me/balance", headers=auth(user))).json()
        assert balance["balances"][0]["available"] == 5_000
        assert await ledger_invariants(session) == []

    async def test_three_d_secure_answers_requires_action(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        stripe_cards.mock.routes["intents"].mock(side_effect=confirm_response)
        user = new_user()
        card = await saved(client, session, stripe_cards, user, "pm_3ds")
        response = await topup(client, user, "t-1", payment_method=f"pmt_{card.id}")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "requires_action"
        assert body["client_secret"].startswith(body["payment_intent_id"])
        assert body["next_action"]["type"] == "use_stripe_sdk"
        order = await order_of(session, user)
        assert order.status == "requires_action"
        types = [t for t, _ in await emitted(session, user)]
        assert types.count("topup.requires_action") == 1
        # Stripe's own requires_action event for the same intent changes nothing more.
        intent = stripe_object("payment_intent")
        intent.update(
            id=order.stripe_payment_intent_id,
            status="requires_action",
            metadata={"order_id": str(order.id)},
        )
        await deliver(client, make_event("payment_intent.requires_action", intent))
        types = [t for t, _ in await emitted(session, user)]
        assert types.count("topup.requires_action") == 1

    async def test_three_d_secure_completed_then_credited_once(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        """The customer passes the challenge (Stripe's SDK): Stripe's event credits."""
        stripe_cards.mock.routes["intents"].mock(side_effect=confirm_response)
        user = new_user()
        card = await saved(client, session, stripe_cards, user, "pm_3ds")
        response = await topup(client, user, "t-1", payment_method=f"pmt_{card.id}")
        assert response.json()["status"] == "requires_action"
        order = await order_of(session, user)
        intent = stripe_object("payment_intent")
        intent.update(
            id=order.stripe_payment_intent_id,
            amount=5_000,
            amount_received=5_000,
            currency="eur",
            status="succeeded",
            latest_charge=None,
            metadata={"order_id": str(order.id)},
        )
        for _ in range(2):  # redelivered: credited once
            await deliver(client, make_event("payment_intent.succeeded", intent))
        api = (await client.get(f"/api/v1/orders/ord_{order.id}", headers=auth(user))).json()
        assert (api["status"], api["failure_code"]) == ("succeeded", None)
        balances = (await client.get("/api/v1/me/balance", headers=auth(user))).json()
        [eur] = [b for b in balances["balances"] if b["currency"] == "eur"]
        assert eur["available"] == 5_000
        types = [t for t, _ in await emitted(session, user)]
        assert types.count("topup.succeeded") == 1
        assert await ledger_invariants(session) == []

    async def test_three_d_secure_failed_fails_the_top_up(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        """The customer fails the challenge: the top-up fails with a stable code and
        nothing is credited."""
        stripe_cards.mock.routes["intents"].mock(side_effect=confirm_response)
        user = new_user()
        card = await saved(client, session, stripe_cards, user, "pm_3ds")
        response = await topup(client, user, "t-1", payment_method=f"pmt_{card.id}")
        assert response.json()["status"] == "requires_action"
        order = await order_of(session, user)
        intent = stripe_object("payment_intent")
        intent.update(
            id=order.stripe_payment_intent_id,
            status="requires_payment_method",
            metadata={"order_id": str(order.id)},
            last_payment_error={
                "type": "card_error",
                "code": "payment_intent_authentication_failure",
                "message": "We are unable to authenticate your payment method.",
            },
        )
        await deliver(client, make_event("payment_intent.payment_failed", intent))
        api = (await client.get(f"/api/v1/orders/ord_{order.id}", headers=auth(user))).json()
        assert (api["status"], api["failure_code"]) == ("failed", "authentication_failed")
        balances = (await client.get("/api/v1/me/balance", headers=auth(user))).json()
        assert [b for b in balances["balances"] if b["currency"] == "eur"] == []
        types = [t for t, _ in await emitted(session, user)]
        assert types.count("topup.failed") == 1
        assert "topup.succeeded" not in types

    async def test_unknown_or_other_users_card(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        owner, other = new_user(), new_user()
        card = await saved(client, session, stripe_cards, owner, "pm_ok")
        for payment_method in (f"pmt_{card.id}", "pmt_999999999"):
            response = await topup(client, other, payment_method, payment_method=payment_method)
            assert response.status_code == 404
            assert response.json()["code"] == "payment_method_not_found"
        assert stripe_cards.mock.routes["intents"].call_count == 0


class TestOffSession:
    async def test_authentication_required_waits_for_the_customer(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_cards: FakeStripeCards,
        app_factory: Any,
    ) -> None:
        stripe_cards.mock.routes["intents"].mock(side_effect=confirm_response)
        app = app_factory(finish_payment_url="https://app.example.com/pay/{order_id}")
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            user = new_user()
            await saved(api, session, stripe_cards, user, "pm_auth")
            response = await topup(api, user, "off-1", off_session=True)
            assert response.status_code == 201, response.text
            order = await order_of(session, user)
            body = response.json()
            assert body["status"] == "requires_action"
            assert body["next_action"] == {
                "type": "finish_on_session",
                "url": f"https://app.example.com/pay/ord_{order.id}",
            }
            form = form_of(stripe_cards.mock.routes["intents"].calls.last.request)
            assert form["off_session"] == "true"
            assert form["confirm"] == "true"
            assert form["payment_method"] == "pm_auth"  # the default card
            assert order.status == "requires_action"
            assert order.off_session is True
            api_order = (await api.get(f"/api/v1/orders/ord_{order.id}", headers=auth(user))).json()
            assert api_order["action_url"] == f"https://app.example.com/pay/ord_{order.id}"
            assert await emitted(session, user) == [
                ("payment_method.saved", (await emitted(session, user))[0][1]),
                ("topup.requires_action", api_order),
            ]
            # Stripe's payment_failed for the same attempt: still waiting, not failed.
            intent = stripe_object("payment_intent")
            intent.update(
                id=order.stripe_payment_intent_id,
                status="requires_payment_method",
                metadata={"order_id": str(order.id)},
                last_payment_error={
                    "type": "card_error",
                    "code": "authentication_required",
                    "decline_code": "authentication_required",
                },
            )
            await deliver(api, make_event("payment_intent.payment_failed", intent))
            await session.refresh(order)
            assert order.status == "requires_action"
            # Waiting money shows as pending.
            balance = (await api.get("/api/v1/me/balance", headers=auth(user))).json()
            assert balance["balances"][0]["pending"] == 5_000
            # A retry with the same key is the same answer, one PaymentIntent.
            again = await topup(api, user, "off-1", off_session=True)
            assert again.json() == body

    async def test_declines_fail_with_stable_codes(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        stripe_cards.mock.routes["intents"].mock(side_effect=confirm_response)
        user = new_user()
        poor = await saved(client, session, stripe_cards, user, "pm_poor")
        response = await topup(client, user, "off-1", off_session=True)
        assert response.status_code == 402
        assert response.json()["code"] == "card_declined"
        assert response.json()["decline_code"] == "insufficient_funds"
        assert "4000000000009995" not in response.text  # Stripe's text never passes
        order = await order_of(session, user)
        assert (order.status, order.failure_code) == ("failed", "insufficient_funds")
        stolen = await saved(client, session, stripe_cards, user, "pm_stolen")
        response = await topup(
            client, user, "off-2", off_session=True, payment_method=f"pmt_{stolen.id}"
        )
        assert response.json()["decline_code"] == "card_declined"  # never "stolen_card"
        assert (await order_of(session, user)).failure_code == "card_declined"
        assert poor.is_default
        types = [t for t, _ in await emitted(session, user)]
        assert types.count("topup.failed") == 2

    async def test_no_default_card(
        self, client: httpx.AsyncClient, stripe_cards: FakeStripeCards
    ) -> None:
        response = await topup(client, new_user(), "off-1", off_session=True)
        assert response.status_code == 422
        assert response.json()["code"] == "no_default_payment_method"
        assert stripe_cards.mock.routes["intents"].call_count == 0


class TestServiceRole:
    async def test_service_tops_up_a_user_off_session(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        stripe_cards.mock.routes["intents"].mock(side_effect=confirm_response)
        user = new_user()
        await saved(client, session, stripe_cards, user, "pm_ok")
        response = await topup(
            client, "billing-bot", "svc-1", ["service"], off_session=True, user_id=user
        )
        assert response.status_code == 201, response.text
        order = await order_of(session, user)
        assert order.user_id == user
        form = form_of(stripe_cards.mock.routes["intents"].calls.last.request)
        assert form["off_session"] == "true"
        assert form["metadata[user_id]"] == user
        # The user's own key "svc-1" is another order.
        mine = await topup(client, user, "svc-1", payment_method=None, off_session=True)
        assert mine.status_code == 201
        assert mine.json()["order_id"] != response.json()["order_id"]

    async def test_only_the_service_role_and_only_off_session(
        self, client: httpx.AsyncClient, stripe_cards: FakeStripeCards
    ) -> None:
        customer = await topup(client, "eve", "e-1", off_session=True, user_id="victim")
        assert customer.status_code == 403
        on_session = await topup(client, "bot", "e-2", ["service"], user_id="victim")
        assert on_session.status_code == 422
        missing = await topup(
            client, "bot", "e-3", ["service"], off_session=True, user_id="nobody-" + new_user()
        )
        assert missing.status_code == 404
        assert missing.json()["code"] == "user_not_found"
        assert stripe_cards.mock.routes["intents"].call_count == 0


class TestPaymentFailedMapping:
    async def test_decline_codes_map_to_stable_codes(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
    ) -> None:
        cases = {
            "generic_decline": "card_declined",
            "expired_card": "expired_card",
            "fraudulent": "card_declined",
            "insufficient_funds": "insufficient_funds",
            "incorrect_cvc": "incorrect_cvc",
        }
        for decline, stable in cases.items():
            user = new_user()
            created = await topup(client, user, "t-1")
            assert created.status_code == 201
            order = await order_of(session, user)
            intent = stripe_object("payment_intent")
            intent.update(
                id=order.stripe_payment_intent_id,
                status="requires_payment_method",
                metadata={"order_id": str(order.id)},
                last_payment_error={
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": decline,
                },
            )
            await deliver(client, make_event("payment_intent.payment_failed", intent))
            api = (await client.get(f"/api/v1/orders/ord_{order.id}", headers=auth(user))).json()
            assert (api["status"], api["failure_code"]) == ("failed", stable), decline
