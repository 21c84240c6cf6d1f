"""Saved cards in sandbox mode, end to end: a SetupIntent confirmed on the hosted page
with Stripe's test cards, the card recorded by the signed event, on- and off-session
top-ups, 3-D Secure finished on-session, detach."""

from __future__ import annotations

import uuid
from typing import Any

from payments_api.payment_methods.models import PaymentMethod
from tests.sandbox.helpers import Sandbox

CUSTOMER = ["customer"]


def uid(tag: str) -> str:
    return f"{tag}_{uuid.uuid4().hex[:10]}"


async def save(sandbox: Sandbox, user: str, number: str, *, authenticate: bool = False) -> Any:
    setup = await sandbox.api("POST", "/api/v1/me/payment-methods/setup", user, CUSTOMER)
    assert setup.status_code == 201, setup.text
    intent = setup.json()["setup_intent_id"]
    page = f"/sandbox/setup_intents/{intent}"
    assert "4242 4242 4242 4242" in (await sandbox.client.get(page)).text
    clicked = await sandbox.click(page, action=number)
    assert clicked.status_code == 303
    if authenticate:
        assert clicked.headers["location"] == f"{page}/authenticate"
        await sandbox.click(f"{page}/authenticate", action="pass")
    await sandbox.deliver()
    cards = await sandbox.api("GET", "/api/v1/me/payment-methods", user, CUSTOMER)
    return cards.json()["data"]


async def topup(sandbox: Sandbox, user: str, **body: Any) -> Any:
    return await sandbox.api(
        "POST", "/api/v1/topups", user, CUSTOMER, json={"amount": 2_500, "currency": "usd", **body}
    )


class TestSavedCardsInTheSandbox:
    async def test_save_on_the_page_then_top_up_off_session(self, sandbox: Sandbox) -> None:
        user = uid("saver")
        [card] = await save(sandbox, user, "4242424242424242")
        assert (card["brand"], card["last4"], card["is_default"]) == ("visa", "4242", True)
        # The same card again: not stored twice.
        assert len(await save(sandbox, user, "4242424242424242")) == 1

        paid = await topup(sandbox, user, off_session=True)
        assert paid.status_code == 201, paid.text
        assert paid.json()["status"] == "succeeded"
        await sandbox.deliver()
        assert await sandbox.balance(user) == 2_500

        removed = await sandbox.api(
            "DELETE", f"/api/v1/me/payment-methods/{card['id']}", user, CUSTOMER
        )
        assert removed.status_code == 200, removed.text
        async with sandbox.sessionmaker() as session:
            method = await session.get(PaymentMethod, int(card["id"].split("_")[1]))
            assert method is not None
            stripe_id = method.stripe_payment_method_id
        assert (await sandbox.stripe_object(stripe_id))["customer"] is None  # detached
        assert "payment_method.detached" in await sandbox.deliver()
        listed = await sandbox.api("GET", "/api/v1/me/payment-methods", user, CUSTOMER)
        assert listed.json()["data"] == []

    async def test_authentication_required_off_session_is_finished_on_session(
        self, sandbox: Sandbox
    ) -> None:
        user = uid("sca")
        [card] = await save(sandbox, user, "4000002760003184", authenticate=True)
        assert card["last4"] == "3184"
        waiting = await topup(sandbox, user, off_session=True)
        assert waiting.status_code == 201, waiting.text
        body = waiting.json()
        assert body["status"] == "requires_action"
        url = body["next_action"]["url"]
        assert url.endswith(f"/sandbox/payment_intents/{body['payment_intent_id']}")
        await sandbox.deliver()
        order = await sandbox.api("GET", f"/api/v1/orders/{body['order_id']}", user, CUSTOMER)
        assert order.json()["status"] == "requires_action"
        assert order.json()["action_url"] == url
        # The customer comes back and pays on-session with the 3-D Secure card.
        page = url.split("http://", 1)[1].split("/", 1)[1]
        clicked = await sandbox.click("/" + page, action="3ds")
        assert clicked.status_code == 303
        await sandbox.click(f"/{page}/authenticate", action="pass")
        await sandbox.deliver()
        order = await sandbox.api("GET", f"/api/v1/orders/{body['order_id']}", user, CUSTOMER)
        assert order.json()["status"] == "succeeded"
        assert await sandbox.balance(user) == 2_500

    async def test_set_up_card_3155_pays_off_session(self, sandbox: Sandbox) -> None:
        user = uid("setup3155")
        [card] = await save(sandbox, user, "4000002500003155", authenticate=True)
        assert card["last4"] == "3155"
        # Authenticated at setup: off-session payments need nothing more (as at Stripe);
        # on-session ones ask for 3-D Secure.
        off = await topup(sandbox, user, off_session=True)
        assert off.json()["status"] == "succeeded", off.text
        on = await topup(sandbox, user, payment_method=card["id"])
        assert on.json()["status"] == "requires_action", on.text
        assert on.json()["next_action"]["type"] == "redirect_to_url"

    async def test_insufficient_funds_and_declined_cards(self, sandbox: Sandbox) -> None:
        user = uid("poor")
        [card] = await save(sandbox, user, "4000000000009995")
        refused = await topup(sandbox, user, off_session=True)
        assert refused.status_code == 402
        assert refused.json()["decline_code"] == "insufficient_funds"
        await sandbox.deliver()
        order = await sandbox.api("GET", "/api/v1/orders", user, CUSTOMER)
        assert [o["failure_code"] for o in order.json()["data"]] == ["insufficient_funds"]
        # 4000 0000 0000 0002 cannot even be saved.
        assert [c["last4"] for c in await save(sandbox, user, "4000000000000002")] == ["9995"]
        assert card["is_default"] is True
