"""Escrows paid by authorization (`capture_method: manual`, SPEC 9.3).

Checkout authorizes the card only; `payment_intent.amount_capturable_updated` makes the
escrow `authorized` with no money in the ledger (only the authorization's memo, whose
postings tests/orders/test_escrow_authorization_ledger.py asserts); the payee's
acceptance captures (all or `amount_to_capture`) with a key derived from the escrow,
and the money lands in escrow only on Stripe's word; a cancel releases the
authorization (PaymentIntent cancel), and Stripe cancelling it itself (expiry) cancels
the escrow. Stripe is respx; webhooks are
signed as Stripe signs them, delivered twice and out of order.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import respx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.escrow.capture import EscrowCaptures
from payments_api.escrow.service import CAPTURE_JOB
from payments_api.kit.clock import utcnow
from payments_api.ledger.models import LedgerTransaction
from payments_api.orders.models import Order
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from tests.factories import create_user, emitted, ledger_invariants
from tests.helpers import auth, make_event, stripe_key, stripe_object
from tests.orders.test_checkout import URLS, balance, completed_session, deliver, the_order
from tests.refunds.helpers import form

PRICE = 10_000
HOLD = 10_500  # the price plus the 5% platform fee


def new_party() -> tuple[str, str]:
    tail = uuid.uuid4().hex[:10]
    return f"mc_cust_{tail}", f"mc_payee_{tail}"


def intent_of(order: Order, pi: str, status: str, **fields: Any) -> dict[str, Any]:
    intent = stripe_object("payment_intent")
    intent.update(
        id=pi,
        amount=order.amount,
        amount_capturable=order.amount if status == "requires_capture" else 0,
        amount_received=0,
        currency=order.currency,
        capture_method="manual",
        status=status,
        latest_charge=None,
        last_payment_error=None,
        cancellation_reason=None,
        metadata={"order_id": str(order.id), "user_id": order.user_id, "purpose": "escrow"},
    )
    intent.update(fields)
    return intent


def stripe_answers(
    mock: respx.MockRouter, order: Order, pi: str
) -> tuple[respx.Route, respx.Route]:
    """Stripe's capture and cancel of ``pi``, as Stripe answers them."""

    def capture(request: httpx.Request) -> httpx.Response:
        amount = int(form(request).get("amount_to_capture") or order.amount)
        return httpx.Response(
            200,
            json=intent_of(order, pi, "succeeded", amount_received=amount, latest_charge="ch_mc"),
        )

    def cancel(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json=intent_of(
                order, pi, "canceled", cancellation_reason=form(request)["cancellation_reason"]
            ),
        )

    captured = mock.post(f"/v1/payment_intents/{pi}/capture", name="capture").mock(
        side_effect=capture
    )
    cancelled = mock.post(f"/v1/payment_intents/{pi}/cancel", name="cancel").mock(
        side_effect=cancel
    )
    return captured, cancelled


async def authorized_escrow(
    client: httpx.AsyncClient, session: AsyncSession, customer: str, payee: str
) -> tuple[str, Order, str]:
    """A 100.00 job paid by authorization: checkout, then Stripe's events."""
    await create_user(session, id=payee, roles=["payee"])
    response = await client.post(
        "/api/v1/checkout/sessions",
        json={
            "purpose": "escrow",
            "capture_method": "manual",
            "payee_id": payee,
            "amount": PRICE,
            "currency": "usd",
            "reference": "job-auth",
            **URLS,
        },
        headers={**auth(customer, ["customer"]), "Idempotency-Key": f"job-{customer}"},
    )
    assert response.status_code == 201, response.text
    order = await the_order(session, customer)
    pi = f"pi_{uuid.uuid4().hex[:16]}"
    session_object = completed_session(order, payment_intent=pi, paid=False)
    session_object["metadata"]["purpose"] = "escrow"
    for event in (
        make_event("checkout.session.completed", session_object),
        make_event(
            "payment_intent.amount_capturable_updated", intent_of(order, pi, "requires_capture")
        ),
    ):
        assert (await deliver(client, event)).status_code == 200
    [escrow] = (await client.get("/api/v1/escrows", headers=auth(customer, ["customer"]))).json()[
        "data"
    ]
    return str(escrow["id"]), await the_order(session, customer), pi


async def get_escrow(client: httpx.AsyncClient, escrow_id: str, user: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/escrows/{escrow_id}", headers=auth(user, ["customer"]))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def post(
    client: httpx.AsyncClient, path: str, user: str, roles: list[str], body: Any = None
) -> httpx.Response:
    return await client.post(
        path,
        json=body,
        headers={**auth(user, roles), "Idempotency-Key": uuid.uuid4().hex},
    )


async def escrow_ledger_rows(session: AsyncSession, escrow_id: str) -> int:
    number = int(escrow_id.removeprefix("esc_"))
    return int(
        await session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.metadata_["escrow_id"].as_integer() == number)
        )
        or 0
    )


def types(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [t for t, _ in events if t.startswith("escrow.")]


class TestAuthorization:
    async def test_checkout_asks_stripe_to_authorize_only(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        escrow_id, order, _pi = await authorized_escrow(client, session, customer, payee)

        sent = form(stripe_payins.routes["sessions"].calls.last.request)
        assert sent["payment_intent_data[capture_method]"] == "manual"
        assert sent["line_items[0][price_data][unit_amount]"] == str(HOLD)
        escrow = await get_escrow(client, escrow_id, customer)
        assert (escrow["status"], escrow["capture_method"], escrow["capture_status"]) == (
            "authorized",
            "manual",
            "authorized",
        )
        assert escrow["authorized_amount"] == HOLD
        assert escrow["funded_at"] is None
        # Authorized money is nobody's balance: only the authorization's memo is in the
        # ledger, shown apart; nothing available, nothing in escrow.
        wallet = (await balance(client, customer))["usd"]
        assert (wallet["available"], wallet["escrow"], wallet["authorized"]) == (0, 0, HOLD)
        assert await escrow_ledger_rows(session, escrow_id) == 1
        assert order.status == "pending"
        assert types(await emitted(session, customer)) == ["escrow.authorized"]

    async def test_manual_capture_is_for_escrows_only(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter
    ) -> None:
        response = await client.post(
            "/api/v1/checkout/sessions",
            json={
                "purpose": "topup",
                "amount": 2_000,
                "currency": "usd",
                "capture_method": "manual",
                **URLS,
            },
            headers={**auth("mc_topup", ["customer"]), "Idempotency-Key": "k"},
        )
        assert response.status_code == 422, response.text
        assert stripe_payins.routes["sessions"].call_count == 0


class TestCapture:
    async def test_full_capture_on_acceptance(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        capture, _cancel = stripe_answers(stripe_payins, order, pi)

        accepted = await post(client, f"/api/v1/escrows/{escrow_id}/accept", payee, ["payee"])

        assert accepted.status_code == 200, accepted.text
        # The answer is written before Stripe is asked (after the commit).
        assert accepted.json()["capture_status"] == "capture_requested"
        assert capture.call_count == 1
        call = capture.calls.last.request
        number = int(escrow_id.removeprefix("esc_"))
        assert call.headers["Idempotency-Key"] == stripe_key("escrow_capture", f"{number}-1")
        assert "Stripe-Account" not in call.headers
        assert form(call) == {"amount_to_capture": str(HOLD)}
        escrow = await get_escrow(client, escrow_id, customer)
        assert (escrow["status"], escrow["capture_status"]) == ("accepted", "captured")
        assert (escrow["amount"], escrow["hold_amount"]) == (PRICE, HOLD)
        wallet = (await balance(client, customer))["usd"]
        assert (wallet["available"], wallet["escrow"]) == (0, PRICE)  # the fee went on accept
        order = await the_order(session, customer)
        assert (order.status, order.amount) == ("succeeded", HOLD)

        # Stripe's own event of that capture, twice: nothing more moves.
        succeeded = make_event(
            "payment_intent.succeeded",
            intent_of(order, pi, "succeeded", amount_received=HOLD),
        )
        for _ in range(2):
            assert (await deliver(client, succeeded)).status_code == 200
        wallet = (await balance(client, customer))["usd"]
        assert (wallet["available"], wallet["escrow"]) == (0, PRICE)
        assert types(await emitted(session, customer)) == [
            "escrow.authorized",
            "escrow.funded",
            "escrow.accepted",
        ]

        completed = await post(
            client, f"/api/v1/escrows/{escrow_id}/complete", customer, ["customer"]
        )
        assert completed.status_code == 200, completed.text
        assert (await balance(client, payee))["usd"]["available"] == 8_000
        assert await ledger_invariants(session) == []

    async def test_partial_capture_recomputes_the_escrow(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        capture, _cancel = stripe_answers(stripe_payins, order, pi)

        accepted = await post(
            client,
            f"/api/v1/escrows/{escrow_id}/accept",
            payee,
            ["payee"],
            {"amount_to_capture": 5_250},
        )

        assert accepted.status_code == 200, accepted.text
        assert form(capture.calls.last.request) == {"amount_to_capture": "5250"}
        escrow = await get_escrow(client, escrow_id, customer)
        # 52.50 captured: a 50.00 job plus its 2.50 fee, by the escrow's own rates.
        assert escrow["status"] == "accepted"
        assert (escrow["amount"], escrow["platform_fee_amount"], escrow["hold_amount"]) == (
            5_000,
            250,
            5_250,
        )
        assert escrow["authorized_amount"] == HOLD
        payee_view = (
            await client.get(f"/api/v1/escrows/{escrow_id}", headers=auth(payee, ["payee"]))
        ).json()
        assert (payee_view["service_fee_amount"], payee_view["payee_amount"]) == (1_000, 4_000)
        wallet = (await balance(client, customer))["usd"]
        assert (wallet["available"], wallet["escrow"]) == (0, 5_000)
        order = await the_order(session, customer)
        assert (order.status, order.amount) == ("succeeded", 5_250)
        # The event of the same capture changes nothing (and no review is needed).
        event = make_event(
            "payment_intent.succeeded", intent_of(order, pi, "succeeded", amount_received=5_250)
        )
        assert (await deliver(client, event)).status_code == 200
        assert (await the_order(session, customer)).status == "succeeded"
        assert (await balance(client, customer))["usd"]["escrow"] == 5_000
        assert await ledger_invariants(session) == []

    async def test_amount_to_capture_is_checked(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        capture, _cancel = stripe_answers(stripe_payins, order, pi)

        too_much = await post(
            client,
            f"/api/v1/escrows/{escrow_id}/accept",
            payee,
            ["payee"],
            {"amount_to_capture": HOLD + 1},
        )

        assert too_much.status_code == 422, too_much.text
        assert too_much.json()["code"] == "escrow_capture_amount_invalid"
        assert too_much.json()["maximum"] == HOLD
        assert capture.call_count == 0
        assert (await get_escrow(client, escrow_id, customer))["capture_status"] == "authorized"

    async def test_a_capture_too_small_to_pay_the_fees_is_refused(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        """A partial capture buys the job at the price it pays: a few cents would be a
        job whose fees round to nothing, so the capture must reach the minimum job price
        (1.00 usd) plus its platform fee (0.05)."""
        customer, payee = new_party()
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        capture, _cancel = stripe_answers(stripe_payins, order, pi)
        for amount in (1, 19, 104):
            tiny = await post(
                client,
                f"/api/v1/escrows/{escrow_id}/accept",
                payee,
                ["payee"],
                {"amount_to_capture": amount},
            )
            assert tiny.status_code == 422, tiny.text
            assert tiny.json()["code"] == "escrow_capture_amount_invalid"
            assert (tiny.json()["minimum"], tiny.json()["maximum"]) == (105, HOLD)
        assert capture.call_count == 0
        assert (await get_escrow(client, escrow_id, customer))["capture_status"] == "authorized"
        smallest = await post(
            client,
            f"/api/v1/escrows/{escrow_id}/accept",
            payee,
            ["payee"],
            {"amount_to_capture": 105},
        )
        assert smallest.status_code == 200, smallest.text
        assert smallest.json()["capture_status"] == "capture_requested"

    async def test_amount_to_capture_on_a_wallet_escrow_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        from tests.factories import fund

        customer, payee = new_party()
        await create_user(session, id=payee, roles=["payee"])
        await create_user(session, id=customer, roles=["customer"])
        await fund(session, customer, 20_000, "usd")
        created = await post(
            client,
            "/api/v1/escrows",
            customer,
            ["customer"],
            {"payee_id": payee, "amount": PRICE, "currency": "usd", "reference": "w"},
        )
        assert created.status_code == 201, created.text
        response = await post(
            client,
            f"/api/v1/escrows/{created.json()['id']}/accept",
            payee,
            ["payee"],
            {"amount_to_capture": 100},
        )
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "escrow_capture_unavailable"


class TestRelease:
    async def test_cancel_before_acceptance_releases_the_authorization(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        capture, cancel = stripe_answers(stripe_payins, order, pi)

        response = await post(
            client, f"/api/v1/escrows/{escrow_id}/cancel", customer, ["customer"], {}
        )

        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["capture_status"]) == (
            "cancelled",
            "release_requested",
        )
        assert cancel.call_count == 1
        assert capture.call_count == 0
        call = cancel.calls.last.request
        number = int(escrow_id.removeprefix("esc_"))
        assert call.headers["Idempotency-Key"] == stripe_key("escrow_release", number)
        assert "Stripe-Account" not in call.headers
        escrow = await get_escrow(client, escrow_id, customer)
        assert (escrow["status"], escrow["capture_status"]) == ("cancelled", "released")
        order = await the_order(session, customer)
        assert (order.status, order.failure_code) == ("failed", "authorization_released")
        # Stripe's event of that cancel, twice: nothing more happens.
        event = make_event(
            "payment_intent.canceled",
            intent_of(order, pi, "canceled", cancellation_reason="requested_by_customer"),
        )
        for _ in range(2):
            assert (await deliver(client, event)).status_code == 200
        # The authorization's memo and its reversal; no money moved.
        assert await escrow_ledger_rows(session, escrow_id) == 2
        assert "usd" not in await balance(client, customer)
        assert types(await emitted(session, customer)) == [
            "escrow.authorized",
            "escrow.cancelled",
            "escrow.authorization_released",
        ]
        assert await ledger_invariants(session) == []

    async def test_expiry_cancels_the_escrow_and_moves_no_money(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        expired = make_event(
            "payment_intent.canceled",
            intent_of(order, pi, "canceled", cancellation_reason="automatic"),
        )

        for _ in range(2):
            assert (await deliver(client, expired)).status_code == 200

        escrow = await get_escrow(client, escrow_id, customer)
        assert (escrow["status"], escrow["capture_status"], escrow["cancel_reason"]) == (
            "cancelled",
            "expired",
            "authorization_expired",
        )
        order = await the_order(session, customer)
        assert (order.status, order.failure_code) == ("expired", "authorization_expired")
        assert await escrow_ledger_rows(session, escrow_id) == 2  # the memo, reversed
        assert "usd" not in await balance(client, customer)
        assert types(await emitted(session, customer)) == [
            "escrow.authorized",
            "escrow.cancelled",
            "escrow.authorization_released",
        ]
        # The payee can no longer accept it, and no Stripe call is made.
        late = await post(client, f"/api/v1/escrows/{escrow_id}/accept", payee, ["payee"])
        assert late.status_code == 409, late.text
        assert all("/capture" not in call.request.url.path for call in stripe_payins.calls)


class TestOutOfOrder:
    async def test_capture_event_before_the_authorization_event(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        """Captured (e.g. from the dashboard) and its event first: the escrow is funded
        with what was captured; the late authorization event changes nothing."""
        customer, payee = new_party()
        await create_user(session, id=payee, roles=["payee"])
        response = await client.post(
            "/api/v1/checkout/sessions",
            json={
                "purpose": "escrow",
                "capture_method": "manual",
                "payee_id": payee,
                "amount": PRICE,
                "currency": "usd",
                "reference": "job-ooo",
                **URLS,
            },
            headers={**auth(customer, ["customer"]), "Idempotency-Key": "ooo"},
        )
        assert response.status_code == 201, response.text
        order = await the_order(session, customer)
        pi = f"pi_{uuid.uuid4().hex[:16]}"

        succeeded = make_event(
            "payment_intent.succeeded", intent_of(order, pi, "succeeded", amount_received=HOLD)
        )
        late = make_event(
            "payment_intent.amount_capturable_updated", intent_of(order, pi, "requires_capture")
        )
        for event in (succeeded, late, succeeded):
            assert (await deliver(client, event)).status_code == 200

        [escrow] = (
            await client.get("/api/v1/escrows", headers=auth(customer, ["customer"]))
        ).json()["data"]
        assert (escrow["status"], escrow["capture_status"]) == ("created", "captured")
        assert (await balance(client, customer))["usd"]["escrow"] == HOLD
        assert types(await emitted(session, customer)) == ["escrow.funded"]
        assert await ledger_invariants(session) == []

    async def test_capture_event_before_the_capture_answer(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        """Stripe's answer is lost (503) but its event arrives: the event completes the
        acceptance; the recovery later finds nothing left to ask."""
        customer, payee = new_party()
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        capture = stripe_payins.post(f"/v1/payment_intents/{pi}/capture").mock(
            return_value=httpx.Response(503, json={"error": {"type": "api_error"}})
        )

        accepted = await post(client, f"/api/v1/escrows/{escrow_id}/accept", payee, ["payee"])
        assert accepted.status_code == 200, accepted.text
        assert capture.call_count >= 1
        assert (await get_escrow(client, escrow_id, customer))["status"] == "authorized"

        event = make_event(
            "payment_intent.succeeded", intent_of(order, pi, "succeeded", amount_received=HOLD)
        )
        assert (await deliver(client, event)).status_code == 200
        escrow = await get_escrow(client, escrow_id, customer)
        assert (escrow["status"], escrow["capture_status"]) == ("accepted", "captured")
        assert (await balance(client, customer))["usd"]["escrow"] == PRICE
        assert await ledger_invariants(session) == []


class TestRecovery:
    async def test_stripe_failing_on_capture_then_the_recovery_captures(
        self,
        client: httpx.AsyncClient,
        stripe_payins: respx.MockRouter,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        customer, payee = new_party()
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        capture, _cancel = stripe_answers(stripe_payins, order, pi)
        stripe_down = True

        def flaky(request: httpx.Request) -> httpx.Response:
            if stripe_down:
                return httpx.Response(500, json={"error": {"type": "api_error"}})
            amount = int(form(request)["amount_to_capture"])
            return httpx.Response(
                200, json=intent_of(order, pi, "succeeded", amount_received=amount)
            )

        capture.mock(side_effect=flaky)

        accepted = await post(client, f"/api/v1/escrows/{escrow_id}/accept", payee, ["payee"])
        assert accepted.status_code == 200, accepted.text
        escrow = await get_escrow(client, escrow_id, customer)
        assert (escrow["status"], escrow["capture_status"]) == ("authorized", "capture_requested")
        wallet = (await balance(client, customer))["usd"]
        assert (wallet["available"], wallet["escrow"], wallet["authorized"]) == (0, 0, HOLD)
        failed_calls = capture.call_count
        number = int(escrow_id.removeprefix("esc_"))
        # The recovery job was queued in the acceptance's transaction.
        queued = await session.scalar(
            text("SELECT count(*) FROM pgqueuer WHERE entrypoint = :e AND payload = :p"),
            {"e": CAPTURE_JOB, "p": str(number).encode()},
        )
        assert queued == 1

        stripe_down = False
        # Not yet due: the sweep leaves a fresh request alone.
        captures = EscrowCaptures(sessionmaker, gateway, settings)
        assert await captures.recover() == 0
        later = EscrowCaptures(
            sessionmaker, gateway, settings, now=lambda: utcnow() + timedelta(minutes=5)
        )
        assert await later.recover() == 1

        keys = {call.request.headers["Idempotency-Key"] for call in capture.calls}
        assert keys == {stripe_key("escrow_capture", f"{number}-1")}
        assert capture.call_count == failed_calls + 1
        escrow = await get_escrow(client, escrow_id, customer)
        assert (escrow["status"], escrow["capture_status"]) == ("accepted", "captured")
        assert (await balance(client, customer))["usd"]["escrow"] == PRICE
        assert await later.recover() == 0
        assert await ledger_invariants(session) == []

    async def test_stripe_refusing_the_capture_allows_a_new_one(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        customer, payee = new_party()
        escrow_id, order, pi = await authorized_escrow(client, session, customer, payee)
        capture, _cancel = stripe_answers(stripe_payins, order, pi)
        refusal = httpx.Response(
            400,
            json={"error": {"type": "invalid_request_error", "code": "amount_too_small"}},
        )
        capture.mock(side_effect=[refusal])
        stripe_payins.get(f"/v1/payment_intents/{pi}").mock(
            return_value=httpx.Response(200, json=intent_of(order, pi, "requires_capture"))
        )

        first = await post(client, f"/api/v1/escrows/{escrow_id}/accept", payee, ["payee"])
        assert first.status_code == 200, first.text
        escrow = await get_escrow(client, escrow_id, customer)
        assert (escrow["status"], escrow["capture_status"]) == ("authorized", "capture_failed")

        capture.mock(
            return_value=httpx.Response(
                200, json=intent_of(order, pi, "succeeded", amount_received=HOLD)
            )
        )
        second = await post(client, f"/api/v1/escrows/{escrow_id}/accept", payee, ["payee"])
        assert second.status_code == 200, second.text
        number = int(escrow_id.removeprefix("esc_"))
        assert capture.calls.last.request.headers["Idempotency-Key"] == stripe_key(
            "escrow_capture", f"{number}-2"
        )
        assert (await get_escrow(client, escrow_id, customer))["status"] == "accepted"
        assert await ledger_invariants(session) == []


class TestAfterTheCommit:
    async def test_stripe_is_asked_only_once_the_acceptance_committed(
        self, committed_client: httpx.AsyncClient, stripe_payins: respx.MockRouter
    ) -> None:
        """With real commits (not the suite's shared connection): the capture is asked
        after the acceptance's transaction committed, so it sees the request, and the
        answer is applied at once."""
        client = committed_client
        customer, payee = new_party()
        await client.get("/api/v1/me/balance", headers=auth(payee, ["payee"]))  # first seen
        response = await client.post(
            "/api/v1/checkout/sessions",
            json={
                "purpose": "escrow",
                "capture_method": "manual",
                "payee_id": payee,
                "amount": PRICE,
                "currency": "usd",
                "reference": "job-committed",
                **URLS,
            },
            headers={**auth(customer, ["customer"]), "Idempotency-Key": f"job-{customer}"},
        )
        assert response.status_code == 201, response.text
        order_id = int(response.json()["order_id"].removeprefix("ord_"))
        order = Order(id=order_id, user_id=customer, amount=HOLD, currency="usd", purpose="escrow")
        pi = f"pi_{uuid.uuid4().hex[:16]}"
        authorization = make_event(
            "payment_intent.amount_capturable_updated", intent_of(order, pi, "requires_capture")
        )
        assert (await deliver(client, authorization)).status_code == 200
        [escrow] = (
            await client.get("/api/v1/escrows", headers=auth(customer, ["customer"]))
        ).json()["data"]
        assert escrow["status"] == "authorized"
        capture, _cancel = stripe_answers(stripe_payins, order, pi)

        accepted = await client.post(
            f"/api/v1/escrows/{escrow['id']}/accept",
            headers={**auth(payee, ["payee"]), "Idempotency-Key": uuid.uuid4().hex},
        )

        assert accepted.status_code == 200, accepted.text
        assert capture.call_count == 1
        got = (
            await client.get(
                f"/api/v1/escrows/{escrow['id']}", headers=auth(customer, ["customer"])
            )
        ).json()
        assert (got["status"], got["capture_status"]) == ("accepted", "captured")
        wallet = (await balance(client, customer))["usd"]
        assert (wallet["available"], wallet["escrow"]) == (0, PRICE)
