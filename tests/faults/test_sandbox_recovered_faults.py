"""The fault matrix over the sandbox, for the Stripe calls the service retries on its own
(issue #17): the client never sees their failure. A webhook handler's read fails the
delivery and Stripe (the sandbox) delivers again; an escrow's capture or release is
asked again by its job (tests/faults/escrow_capture.py). Same faults and phases as
tests/faults/test_sandbox_faults.py (see tests/faults/matrix.py).

Each cell asserts what reached Stripe (the form, the Idempotency-Keys, no Stripe-Account
on these platform calls) and the money outcome: booked once, exactly one Stripe object,
ledger invariants hold.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import ClassVar

import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from payments_api.state import AppState
from payments_sandbox.models import SandboxEvent
from tests.factories import ledger_invariants
from tests.faults.escrow_capture import CancelAuthorizedEscrow, CaptureEscrow, ReadBackIntent
from tests.faults.fault_injector import LEAK_MARKER, FaultInjector, FaultKind
from tests.faults.matrix import FAULT_IDS, FAULTS, PHASES, RecoveredFlow, fault_then_recovery
from tests.sandbox.helpers import Sandbox, database_now, run_delivery_jobs

AMOUNT = 5_000
FEE = AMOUNT * 290 // 10_000 + 30  # the sandbox's card fee: 2.9% + 0.30


class PaymentWebhook(RecoveredFlow):
    """Stripe's ``payment_intent.succeeded`` of a top-up paid on the sandbox's page; its
    handler reads the charge's fee. A failed read fails the delivery (500
    ``webhook_processing_failed``, Stripe's words never in it) and the sandbox delivers
    again later; the money and the fee arrive once."""

    gateway_method = "retrieve_charge_with_fee"
    verb = "GET"
    stripe_path = "/v1/charges/[^/]+"
    form: ClassVar[dict[str, str]] = {"expand[0]": "balance_transaction"}
    deliveries = 0

    async def prepare(self) -> None:
        self.user = f"flt_{uuid.uuid4().hex[:10]}"
        created = await self.sandbox.api(
            "POST",
            "/api/v1/topups",
            self.user,
            ["customer"],
            json={"amount": AMOUNT, "currency": "usd"},
        )
        assert created.status_code == 201, created.text
        self.order = int(created.json()["order_id"].removeprefix("ord_"))
        await self.sandbox.deliver()
        intent = created.json()["payment_intent_id"]
        paid = await self.sandbox.click(f"/sandbox/payment_intents/{intent}", action="pay")
        assert paid.status_code == 303, paid.text
        self.start = await database_now(self.sandbox.sessionmaker)

    async def succeeded_event(self) -> SandboxEvent:
        async with self.sandbox.sessionmaker() as session:
            [event] = await session.scalars(
                select(SandboxEvent)
                .where(SandboxEvent.type == "payment_intent.succeeded")
                .execution_options(populate_existing=True)
            )
            return event

    async def attempt(self, fault: FaultKind | None) -> None:
        # The sandbox's delivery jobs due by then: each round is an hour later, past the
        # longest backoff, so the event's next attempt is among them.
        at = self.start + timedelta(hours=self.deliveries)
        self.deliveries += 1
        assert await run_delivery_jobs(self.sandbox.sessionmaker, self.sandbox.settings, at=at)
        event = await self.succeeded_event()
        assert event.attempts == self.deliveries
        if fault is not None:
            assert (event.status, event.last_status) == ("pending", 500)
            assert event.last_error is not None
            assert "webhook_processing_failed" in event.last_error
            assert LEAK_MARKER not in event.last_error
            return
        assert (event.status, event.last_status) == ("delivered", 200)

    async def settled(self) -> None:
        assert await self.sandbox.balance(self.user) == AMOUNT
        async with self.sandbox.sessionmaker() as session:
            fee = await session.scalar(
                text("SELECT processing_fee_amount FROM orders WHERE id = :o"), {"o": self.order}
            )
            fees = await session.scalar(
                text(
                    "SELECT count(*) FROM ledger_transactions WHERE type = 'processing_fee'"
                    " AND (metadata ->> 'order_id')::bigint = :o"
                ),
                {"o": self.order},
            )
            status = await session.scalar(
                text("SELECT status FROM webhook_events WHERE type = 'payment_intent.succeeded'")
            )
        assert (fee, fees, status) == (FEE, 1, "processed")
        [intent] = await self.sandbox.objects_of("payment_intent")
        [charge] = await self.sandbox.objects_of("charge")
        assert intent["latest_charge"] == charge["id"]


# The webhook's read (Stripe delivers again), then the escrows paid by authorization
# (the client's answer never waits on Stripe; the escrow.capture job asks again).
FLOWS: list[type[RecoveredFlow]] = [
    PaymentWebhook,
    CaptureEscrow,
    CancelAuthorizedEscrow,
    ReadBackIntent,
]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
@pytest.mark.parametrize("flow", FLOWS, ids=[f.gateway_method for f in FLOWS])
async def test_fault(
    sandbox: Sandbox,
    sandbox_app: FastAPI,
    faulty: FaultInjector,
    flow: type[RecoveredFlow],
    fault: FaultKind,
    phase: str,
) -> None:
    state: AppState = sandbox_app.state.resources
    cell = flow(sandbox, state, faulty)
    await cell.prepare()
    faulty.requests.clear()
    calls = await fault_then_recovery(
        faulty,
        cell.stripe_path,
        fault,
        phase,
        cell.attempt,
        verb=cell.verb,
        refusal_is_final=False,
        keys=cell.keys(fault),
    )
    for call in calls:
        assert call.stripe_account is None  # the platform's own calls
        assert {k: call.form.get(k) for k in cell.form} == cell.form
    await cell.settled()
    async with sandbox.sessionmaker() as session:
        assert await ledger_invariants(session) == []
