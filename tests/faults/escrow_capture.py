"""Fault-matrix rows for a manual-capture escrow's Stripe calls (SPEC 9.3), over the
sandbox: the card is authorized on its hosted checkout page.

The payee's accept (capture) and a cancel (release) are answered before Stripe is
asked: the request records ``capture_requested`` / ``release_requested``, queues the
``escrow.capture`` job and asks Stripe after its commit. A failed call is never the
client's problem: the escrow stays in flight and the job (``EscrowCaptures.submit``,
what ``escrow.capture`` runs) asks again with the same key. A capture Stripe refuses is
read back (``retrieve_payment_intent``) to learn why. In every cell the money is booked
once, also after Stripe's events for the intent arrive: one ``escrow_funding`` (or none
for a release), the authorization's memo reversed once, ledger invariants hold.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from sqlalchemy import text

from payments_api.escrow.capture import EscrowCaptures
from payments_api.escrow.service import CAPTURE_JOB
from tests.faults.fault_injector import FaultKind
from tests.faults.matrix import TRANSIENT, RecoveredFlow
from tests.helpers import auth
from tests.sandbox.test_manual_capture import authorized

PRICE, HOLD = 10_000, 10_500  # a 100.00 job and its 5% platform fee
CAPTURED = {
    "escrow_authorization": 1,
    "escrow_authorization_captured": 1,
    "escrow_funding": 1,
    "escrow_platform_fee": 1,
}


class EscrowFlow(RecoveredFlow):
    """An escrow the customer's card authorized (``requires_capture`` at the sandbox)."""

    verb = "POST"
    customer: str
    payee: str
    escrow: str
    intent: str
    asked = 0
    """How many times the client asked (each time a new request, a new key)."""

    async def prepare(self) -> None:
        self.customer, self.payee, self.escrow, self.intent = await authorized(self.sandbox)
        self.number = int(self.escrow.removeprefix("esc_"))
        self.key = f"idem-{uuid.uuid4().hex}"

    async def escrow_state(self) -> tuple[str, str]:
        async with self.sandbox.sessionmaker() as session:
            row = (
                await session.execute(
                    text("SELECT status, capture_status FROM escrows WHERE id = :e"),
                    {"e": self.number},
                )
            ).one()
        return str(row.status), str(row.capture_status)

    async def transactions(self) -> dict[str, int]:
        async with self.sandbox.sessionmaker() as session:
            rows = await session.execute(
                text(
                    "SELECT type, count(*) FROM ledger_transactions"
                    " WHERE (metadata ->> 'escrow_id')::bigint = :e GROUP BY type"
                ),
                {"e": self.number},
            )
            return {str(type_): int(n) for type_, n in rows.all()}

    async def wallet(self) -> dict[str, int]:
        response = await self.sandbox.client.get("/api/v1/me/balance", headers=auth(self.customer))
        assert response.status_code == 200, response.text
        for entry in response.json()["balances"]:
            if entry["currency"] == "usd":
                found: dict[str, int] = entry
                return found
        return {"available": 0, "escrow": 0, "authorized": 0}

    async def the_job(self) -> None:
        """What the queued ``escrow.capture`` job runs (it is queued: asserted)."""
        async with self.sandbox.sessionmaker() as session:
            queued = await session.scalar(
                text("SELECT count(*) FROM pgqueuer WHERE entrypoint = :e AND payload = :p"),
                {"e": CAPTURE_JOB, "p": str(self.number).encode()},
            )
        assert queued >= 1
        captures = EscrowCaptures(self.state.sessionmaker, self.state.stripe, self.state.settings)
        await captures.submit(self.number)

    async def accept(self, key: str) -> None:
        """The payee accepts; Stripe's failure never reaches them: the capture is
        recorded."""
        response = await self.sandbox.client.post(
            f"/api/v1/escrows/{self.escrow}/accept",
            headers={**auth(self.payee, ["payee"]), "Idempotency-Key": key},
        )
        assert response.status_code == 200, response.text
        assert response.json()["capture_status"] == "capture_requested"

    async def the_intent(self) -> dict[str, Any]:
        """The one PaymentIntent at the sandbox (never a second one)."""
        [intent] = await self.sandbox.objects_of("payment_intent")
        assert intent["id"] == self.intent
        return intent

    async def events_arrive(self) -> None:
        """Stripe's events for what happened arrive (after the answer was applied)."""
        await self.sandbox.deliver()
        assert await self.sandbox.undelivered() == []

    async def assert_captured(self) -> None:
        assert await self.escrow_state() == ("accepted", "captured")
        assert await self.transactions() == CAPTURED
        wallet = await self.wallet()
        assert (wallet["available"], wallet["escrow"], wallet["authorized"]) == (0, PRICE, 0)
        intent = await self.the_intent()
        assert (intent["status"], intent["amount_received"]) == ("succeeded", HOLD)
        [charge] = await self.sandbox.objects_of("charge")
        assert (charge["amount_captured"], charge["payment_intent"]) == (HOLD, self.intent)


class CaptureEscrow(EscrowFlow):
    """The payee accepts an authorized escrow: Stripe's capture. Unknown outcome
    (timeout, 5xx, 429): still ``capture_requested``, the job asks again with the same
    key. Refused (400, the intent still ``requires_capture`` when read back):
    ``capture_failed``, and the payee accepting again asks anew (a new round's key)."""

    gateway_method = "capture_payment_intent"
    stripe_path = "/v1/payment_intents/[^/]+/capture"
    form: ClassVar[dict[str, str]] = {"amount_to_capture": str(HOLD)}

    async def attempt(self, fault: FaultKind | None) -> None:
        state = await self.escrow_state() if self.asked else None
        if state is None or state[1] == "capture_failed":
            self.asked += 1
            await self.accept(f"{self.key}-{self.asked}")
        else:
            await self.the_job()
        status, capture_status = await self.escrow_state()
        if fault is None:
            assert (status, capture_status) == ("accepted", "captured")
        elif fault in TRANSIENT:
            assert (status, capture_status) == ("authorized", "capture_requested")
        else:
            assert (status, capture_status) == ("authorized", "capture_failed")
        if fault is not None:
            wallet = await self.wallet()
            assert (wallet["escrow"], wallet["authorized"]) == (0, HOLD)

    def keys(self, fault: FaultKind) -> int:
        # One key per acceptance round: the job's retries reuse it; only a refusal
        # followed by a new accept asks under a new one.
        return 2 if fault is FaultKind.invalid_request else 1

    async def settled(self) -> None:
        await self.assert_captured()
        await self.events_arrive()
        await self.assert_captured()


class CancelAuthorizedEscrow(EscrowFlow):
    """The customer cancels an authorized escrow: Stripe's cancel releases the card.
    The escrow is cancelled at once (``release_requested``); a failed cancel, even a
    refusal, leaves it so and the job asks again with the same key."""

    gateway_method = "cancel_payment_intent"
    stripe_path = "/v1/payment_intents/[^/]+/cancel"
    form: ClassVar[dict[str, str]] = {"cancellation_reason": "requested_by_customer"}

    async def attempt(self, fault: FaultKind | None) -> None:
        if not self.asked:
            self.asked = 1
            response = await self.sandbox.client.post(
                f"/api/v1/escrows/{self.escrow}/cancel",
                json={},
                headers={**auth(self.customer, ["customer"]), "Idempotency-Key": self.key},
            )
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "cancelled"
        else:
            await self.the_job()
        expected = "released" if fault is None else "release_requested"
        assert await self.escrow_state() == ("cancelled", expected)
        wallet = await self.wallet()
        assert (wallet["escrow"], wallet["authorized"]) == (0, 0 if fault is None else HOLD)

    async def assert_released(self) -> None:
        assert await self.escrow_state() == ("cancelled", "released")
        assert await self.transactions() == {
            "escrow_authorization": 1,
            "escrow_authorization_released": 1,
        }
        wallet = await self.wallet()
        assert (wallet["available"], wallet["escrow"], wallet["authorized"]) == (0, 0, 0)
        intent = await self.the_intent()
        assert (intent["status"], intent["amount_received"]) == ("canceled", 0)

    async def settled(self) -> None:
        await self.assert_released()
        await self.events_arrive()
        await self.assert_released()


class ReadBackIntent(EscrowFlow):
    """Stripe refuses the capture because the intent was captured meanwhile (from the
    dashboard, its webhook not here yet): the intent is read back and what it says is
    applied. A failed read changes nothing (``capture_requested``); the job asks again
    (Stripe replays its refusal for the same key) and reads again."""

    gateway_method = "retrieve_payment_intent"
    verb = "GET"
    stripe_path = "/v1/payment_intents/[^/]+"

    async def prepare(self) -> None:
        await super().prepare()
        captured = await self.sandbox.stripe("POST", f"/v1/payment_intents/{self.intent}/capture")
        assert captured.status_code == 200, captured.text
        assert captured.json()["status"] == "succeeded"

    async def attempt(self, fault: FaultKind | None) -> None:
        if not self.asked:
            self.asked = 1
            await self.accept(self.key)
        else:
            await self.the_job()
        expected = (
            ("accepted", "captured") if fault is None else ("authorized", "capture_requested")
        )
        assert await self.escrow_state() == expected

    async def settled(self) -> None:
        await self.assert_captured()
        # Every capture the service asked (each refused) carried the one key.
        captures = self.faulty.calls("POST", CaptureEscrow.stripe_path)
        assert len(captures) == len(self.faulty.calls(self.verb, self.stripe_path))
        keys = {c.idempotency_key for c in captures}
        assert len(keys) == 1, keys
        assert None not in keys
        await self.events_arrive()
        await self.assert_captured()
