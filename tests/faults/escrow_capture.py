"""Fault-matrix scenarios for a manual-capture escrow's Stripe calls (SPEC 9.3).

The payee's accept (capture) and a cancel (release) are answered before Stripe is
asked: the request records ``capture_requested`` / ``release_requested``, queues the
``escrow.capture`` job and asks Stripe after its commit. A failed call is never the
client's problem: the escrow stays in flight and the job (``EscrowCaptures.submit``,
what ``escrow.capture`` runs) asks again with the same key. A capture Stripe refuses is
read back (``retrieve_payment_intent``) to learn why. In every cell the money is booked
once: one ``escrow_funding`` (or none for a release), the authorization's memo reversed
once, ledger invariants hold.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import text

from payments_api.escrow.capture import EscrowCaptures
from payments_api.escrow.service import CAPTURE_JOB
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.factories import create_user
from tests.faults.fault_injector import FaultKind
from tests.faults.harness import TRANSIENT, Harness, Scenario
from tests.helpers import auth, make_event, signed_webhook

PRICE, HOLD = 10_000, 10_500  # a 100.00 job and its 5% platform fee
URLS = {
    "success_url": "http://localhost:3000/jobs?paid=1",
    "cancel_url": "http://localhost:3000/jobs",
}


async def deliver(t: Harness, event: dict[str, Any]) -> None:
    body, headers = signed_webhook(event, TEST_WEBHOOK_SECRET)
    response = await t.client.post("/api/v1/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 200, response.text


async def authorized_escrow(t: Harness) -> None:
    """A job paid by authorization: checkout, the card authorized at the fake Stripe,
    and its ``payment_intent.amount_capturable_updated``."""
    payee = f"{t.user}_payee"
    await create_user(t.session, id=payee, roles=["payee"])
    response = await t.client.post(
        "/api/v1/checkout/sessions",
        json={
            "purpose": "escrow",
            "capture_method": "manual",
            "payee_id": payee,
            "amount": PRICE,
            "currency": "usd",
            "reference": "faults",
            **URLS,
        },
        headers={**auth(t.user, ["customer"]), "Idempotency-Key": f"checkout-{t.user}"},
    )
    assert response.status_code == 201, response.text
    order_id = str(response.json()["order_id"]).removeprefix("ord_")
    pi = t.fake.authorized_intent(
        {"order_id": order_id, "user_id": t.user, "purpose": "escrow"}, HOLD, "usd"
    )
    await deliver(
        t, make_event("payment_intent.amount_capturable_updated", copy.deepcopy(t.fake.objects[pi]))
    )
    escrows = await t.client.get("/api/v1/escrows", headers=auth(t.user, ["customer"]))
    [escrow] = escrows.json()["data"]
    assert escrow["status"] == "authorized", escrow
    t.memo.update(payee=payee, pi=pi, escrow=escrow["id"])
    t.memo["number"] = int(str(escrow["id"]).removeprefix("esc_"))
    t.fake.requests.clear()


async def escrow_state(t: Harness) -> tuple[str, str]:
    row = (
        await t.session.execute(
            text("SELECT status, capture_status FROM escrows WHERE id = :e"),
            {"e": t.memo["number"]},
        )
    ).one()
    return str(row.status), str(row.capture_status)


async def transactions_of(t: Harness) -> dict[str, int]:
    rows = await t.session.execute(
        text(
            "SELECT type, count(*) FROM ledger_transactions"
            " WHERE (metadata ->> 'escrow_id')::bigint = :e GROUP BY type"
        ),
        {"e": t.memo["number"]},
    )
    return {str(type_): int(n) for type_, n in rows.all()}


async def customer_wallet(t: Harness) -> dict[str, int]:
    response = await t.client.get("/api/v1/me/balance", headers=auth(t.user))
    for entry in response.json()["balances"]:
        if entry["currency"] == "usd":
            found: dict[str, int] = entry
            return found
    return {"available": 0, "escrow": 0, "authorized": 0}


async def the_job(t: Harness) -> None:
    """What the queued ``escrow.capture`` job runs (it is queued: asserted)."""
    queued = await t.scalar(
        "SELECT count(*) FROM pgqueuer WHERE entrypoint = :e AND payload = :p",
        e=CAPTURE_JOB,
        p=str(t.memo["number"]).encode(),
    )
    assert queued >= 1
    captures = EscrowCaptures(t.state.sessionmaker, t.state.stripe, t.state.settings)
    await captures.submit(t.memo["number"])


class CaptureEscrow(Scenario):
    """The payee accepts an authorized escrow: Stripe's capture. Unknown outcome
    (timeout, 5xx, 429): still ``capture_requested``, the job asks again with the same
    key. Refused (400, the intent still ``requires_capture`` when read back):
    ``capture_failed``, and the payee accepting again asks anew (a new round's key)."""

    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        await authorized_escrow(t)

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        state = await escrow_state(t) if "asked" in t.memo else None
        if state is None or state[1] == "capture_failed":
            # The payee's accept (again after a refusal: a new request, a new key).
            t.memo["asked"] = t.memo.get("asked", 0) + 1
            response = await t.client.post(
                f"/api/v1/escrows/{t.memo['escrow']}/accept",
                headers={
                    **auth(t.memo["payee"], ["payee"]),
                    "Idempotency-Key": f"{t.key}-{t.memo['asked']}",
                },
            )
            # Stripe's failure never reaches the payee: the capture is recorded.
            assert response.status_code == 200, response.text
            assert response.json()["capture_status"] == "capture_requested"
        else:
            await the_job(t)
        status, capture_status = await escrow_state(t)
        if fault is None:
            assert (status, capture_status) == ("accepted", "captured")
        elif fault in TRANSIENT:
            assert (status, capture_status) == ("authorized", "capture_requested")
        else:
            assert (status, capture_status) == ("authorized", "capture_failed")
        if fault is not None:
            wallet = await customer_wallet(t)
            assert (wallet["escrow"], wallet["authorized"]) == (0, HOLD)

    async def settled(self, t: Harness) -> None:
        assert await transactions_of(t) == {
            "escrow_authorization": 1,
            "escrow_authorization_captured": 1,
            "escrow_funding": 1,
            "escrow_platform_fee": 1,
        }
        wallet = await customer_wallet(t)
        assert (wallet["available"], wallet["escrow"], wallet["authorized"]) == (0, PRICE, 0)
        intent = t.fake.objects[t.memo["pi"]]
        assert (intent["status"], intent["amount_received"]) == ("succeeded", HOLD)
        # One key per acceptance round: the job's retries reuse it; only a refusal
        # followed by a new accept asks under a new one.
        keys = {c.idempotency_key for c in t.fake.calls("POST", "/v1/payment_intents/.+/capture")}
        assert len(keys) == t.memo["asked"]
        assert None not in keys


class CancelAuthorizedEscrow(Scenario):
    """The customer cancels an authorized escrow: Stripe's cancel releases the card.
    The escrow is cancelled at once (``release_requested``); a failed cancel, even a
    refusal, leaves it so and the job asks again with the same key."""

    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        await authorized_escrow(t)

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        if "asked" not in t.memo:
            t.memo["asked"] = True
            response = await t.client.post(
                f"/api/v1/escrows/{t.memo['escrow']}/cancel",
                json={},
                headers=t.headers("customer"),
            )
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "cancelled"
        else:
            await the_job(t)
        expected = "released" if fault is None else "release_requested"
        assert await escrow_state(t) == ("cancelled", expected)
        wallet = await customer_wallet(t)
        assert (wallet["escrow"], wallet["authorized"]) == (0, 0 if fault is None else HOLD)

    async def settled(self, t: Harness) -> None:
        assert await transactions_of(t) == {
            "escrow_authorization": 1,
            "escrow_authorization_released": 1,
        }
        intent = t.fake.objects[t.memo["pi"]]
        assert (intent["status"], intent["amount_received"]) == ("canceled", 0)
        keys = {c.idempotency_key for c in t.fake.calls("POST", "/v1/payment_intents/.+/cancel")}
        assert len(keys) == 1
        assert None not in keys


class ReadBackIntent(Scenario):
    """Stripe refuses the capture because the intent was captured meanwhile (from the
    dashboard, its webhook not here yet): the intent is read back and what it says is
    applied. A failed read changes nothing (``capture_requested``); the job asks again."""

    async def prepare(self, t: Harness) -> None:
        await super().prepare(t)
        await authorized_escrow(t)
        intent = t.fake.objects[t.memo["pi"]]
        intent.update(status="succeeded", amount_received=HOLD, amount_capturable=0)

    async def attempt(self, t: Harness, fault: FaultKind | None) -> None:
        if "asked" not in t.memo:
            t.memo["asked"] = True
            response = await t.client.post(
                f"/api/v1/escrows/{t.memo['escrow']}/accept",
                headers={**auth(t.memo["payee"], ["payee"]), "Idempotency-Key": t.key},
            )
            assert response.status_code == 200, response.text
        else:
            await the_job(t)
        expected = (
            ("accepted", "captured") if fault is None else ("authorized", "capture_requested")
        )
        assert await escrow_state(t) == expected

    async def settled(self, t: Harness) -> None:
        assert await transactions_of(t) == {
            "escrow_authorization": 1,
            "escrow_authorization_captured": 1,
            "escrow_funding": 1,
            "escrow_platform_fee": 1,
        }
        wallet = await customer_wallet(t)
        assert (wallet["available"], wallet["escrow"], wallet["authorized"]) == (0, PRICE, 0)
