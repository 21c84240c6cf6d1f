"""No card number, CVC or whole PaymentMethod object in logs or tables (SPEC 6.8, 9.3)."""

from __future__ import annotations

import io
import logging
import uuid

import httpx
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers import auth
from tests.payment_methods.conftest import FakeStripeCards, deliver, setup_succeeded_event
from tests.payment_methods.test_card_topups import confirm_response

CARD_NUMBER = "4000002500003155"  # canaries planted in what Stripe answers
CVC = "cvc-canary-739"


async def every_row(session: AsyncSession) -> str:
    tables = (
        await session.scalars(
            text(
                "SELECT quote_ident(table_name) FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        )
    ).all()
    dumped: list[str] = []
    for table in tables:
        rows = await session.scalars(text(f"SELECT row_to_json(t)::text FROM {table} t"))
        dumped.extend(rows)
    return "\n".join(dumped)


async def test_saving_and_charging_a_card_stores_and_logs_no_card_data(
    client: httpx.AsyncClient, session: AsyncSession, stripe_cards: FakeStripeCards
) -> None:
    stripe_cards.mock.routes["intents"].mock(side_effect=confirm_response)
    [handler] = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler)
        and isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]
    captured = io.StringIO()
    previous = handler.setStream(captured)
    try:
        user = f"pci_{uuid.uuid4().hex[:8]}"
        setup = (
            await client.post(
                "/api/v1/me/payment-methods/setup",
                headers={**auth(user), "Idempotency-Key": "s-1"},
            )
        ).json()
        method = stripe_cards.card("pm_ok", customer=setup["customer"], fingerprint="fpPCI")
        # Stripe never sends these; planted so a stored or logged whole object shows.
        method["card"].update(number=CARD_NUMBER, cvc=CVC)
        event = setup_succeeded_event(
            setup["setup_intent_id"],
            customer=setup["customer"],
            user_id=user,
            payment_method="pm_ok",
        )
        assert (await deliver(client, event)).json()["status"] == "processed"
        cards = (await client.get("/api/v1/me/payment-methods", headers=auth(user))).json()
        [card] = cards["data"]
        topup = await client.post(
            "/api/v1/topups",
            json={"amount": 5_000, "currency": "eur", "payment_method": card["id"]},
            headers={**auth(user), "Idempotency-Key": "t-1"},
        )
        assert topup.status_code == 201, topup.text
    finally:
        handler.setStream(previous)
    logged = captured.getvalue()
    assert "setup_intent" in logged or "webhook" in logged  # the capture saw the requests
    stored = await every_row(session)
    assert "fpPCI" in stored  # the fingerprint is kept (duplicates)
    for secret in (CARD_NUMBER, CVC, "1234 Fake Street", "three_d_secure_usage"):
        assert secret not in logged, secret
        assert secret not in stored, secret
    # Nor in any answer or outgoing event.
    assert CARD_NUMBER not in str(cards)
