"""Reconciliation of direct payments (destination charges): the charge, the transfer to
the payee, the application fee and, on refund, the refund, the transfer reversal and the
application fee refund match the ledger's entries with no false alarm, in Stripe's shape
and in the sandbox's; injected faults are listed exactly."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.orders.models import Order
from payments_api.projects import direct
from payments_api.projects.models import Project
from payments_api.refunds.settlement import RefundSettlement
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import Refund as StripeRefund
from payments_api.stripe.objects import parse_object
from tests.factories import create_user, ledger_invariants
from tests.reconciliation.conftest import CURRENCY, SeededDay, StripeDay, balance_transaction
from tests.reconciliation.test_router import ours, reconcile, remove_ledger_entry

AMOUNT, FEE, REFUND = 5_000, 500, 2_000
# the refund's split, largest remainder: 10% of 20.00 is the fee's 2.00
FEE_BACK, PAYEE_BACK = 200, 1_800


@dataclass
class DirectDay:
    real: str
    """The PaymentIntent of the payment in Stripe's shape (transfer of the gross, an
    application fee, a reversal of the refund's amount, an application fee refund)."""
    sandbox: str
    """The PaymentIntent of the payment in the sandbox's shape (transfer net of the fee,
    a reversal of the payee's share)."""


async def _paid_and_refunded(
    session: AsyncSession, gateway: StripeGateway, seeded: SeededDay, tag: str
) -> str:
    """A direct payment and a refund of part of it, recorded by the domains' own code."""
    payer = await create_user(session)
    payee = await create_user(session, roles=["payee"])
    project = Project(owner_id=payee.id, name="Show", currency=CURRENCY)
    session.add(project)
    await session.flush()
    pi = seeded.sid(f"pi_{tag}")
    order = Order(
        user_id=payer.id,
        purpose="direct",
        channel="checkout_session",
        status="succeeded",
        amount=AMOUNT,
        currency=CURRENCY,
        idempotency_key=uuid.uuid4().hex,
        request_fingerprint="0" * 64,
        stripe_payment_intent_id=pi,
        reference={
            "payee_id": payee.id,
            "project_id": project.id,
            "project_name": project.name,
            "session_id": None,
            "kind": "tip",
            "destination": seeded.sid(f"acct_{tag}"),
            "application_fee_amount": FEE,
        },
    )
    session.add(order)
    await session.flush()
    assert await direct.record_paid(
        session, order, payment_intent_id=pi, amount=AMOUNT, currency=CURRENCY
    )
    refund: dict[str, Any] = {
        "id": seeded.sid(f"re_{tag}"),
        "object": "refund",
        "amount": REFUND,
        "currency": CURRENCY,
        "payment_intent": pi,
        "charge": seeded.sid(f"ch_{tag}"),
        "status": "succeeded",
        "metadata": {},
        "reason": "requested_by_customer",
        "transfer_reversal": seeded.sid(f"trr_{tag}"),
    }
    settled = await RefundSettlement(session, gateway).apply(parse_object(StripeRefund, refund))
    assert settled is not None
    assert (settled.payee_share, settled.fee_share) == (PAYEE_BACK, FEE_BACK)
    return pi


def _stripe_side(seeded: SeededDay, tag: str, *, real: bool) -> list[dict[str, Any]]:
    pi, ch, tr, fee, re, trr, fr = (
        seeded.sid(f"{p}_{tag}") for p in ("pi", "ch", "tr", "fee", "re", "trr", "fr")
    )
    at = seeded.created
    charge = {
        "id": ch,
        "object": "charge",
        "payment_intent": pi,
        "amount": AMOUNT,
        "transfer": tr,
        "transfer_data": {"destination": seeded.sid(f"acct_{tag}")},
        "application_fee": fee if real else None,
    }
    transfer = {"id": tr, "object": "transfer", "source_transaction": ch}
    refund = {"id": re, "object": "refund", "payment_intent": pi, "transfer_reversal": trr}
    reversal = {"id": trr, "object": "transfer_reversal", "transfer": tr, "source_refund": re}
    found = [
        balance_transaction(seeded.sid(f"txn_ch_{tag}"), "charge", AMOUNT, charge, at),
        balance_transaction(
            seeded.sid(f"txn_tr_{tag}"),
            "transfer",
            -(AMOUNT if real else AMOUNT - FEE),
            transfer,
            at,
        ),
        balance_transaction(seeded.sid(f"txn_re_{tag}"), "refund", -REFUND, refund, at),
        balance_transaction(
            seeded.sid(f"txn_trr_{tag}"),
            "transfer_refund",
            REFUND if real else PAYEE_BACK,
            reversal,
            at,
        ),
    ]
    if real:
        application_fee = {
            "id": fee,
            "object": "application_fee",
            "originating_transaction": ch,
            "charge": seeded.sid(f"py_{tag}"),
        }
        fee_refund = {"id": fr, "object": "fee_refund", "fee": fee}
        found += [
            balance_transaction(
                seeded.sid(f"txn_fee_{tag}"), "application_fee", FEE, application_fee, at
            ),
            balance_transaction(
                seeded.sid(f"txn_fr_{tag}"), "application_fee_refund", -FEE_BACK, fee_refund, at
            ),
        ]
    return found


@pytest.fixture
async def direct_day(
    session: AsyncSession, gateway: StripeGateway, seeded_day: SeededDay
) -> DirectDay:
    """The seeded day plus two direct payments, each partly refunded."""
    day = DirectDay(
        real=await _paid_and_refunded(session, gateway, seeded_day, "dA"),
        sandbox=await _paid_and_refunded(session, gateway, seeded_day, "dB"),
    )
    seeded_day.transactions += _stripe_side(seeded_day, "dA", real=True)
    seeded_day.transactions += _stripe_side(seeded_day, "dB", real=False)
    return day


class TestDirectFlows:
    async def test_a_day_with_direct_payments_and_refunds_has_no_mismatch(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        direct_day: DirectDay,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        run = await reconcile(client, seeded_day)

        assert run["status"] == "completed"
        assert ours(run) == []
        [snapshot] = [s for s in run["snapshots"] if s["currency"] == CURRENCY]
        # the seeded day's flows, plus each direct payment's net: fee 5.00 less 2.00 back
        assert snapshot["stripe_day_net"] == (10_000 - 320 - 2_000 - 3_500 - 1_500) + 2 * (
            FEE - FEE_BACK
        )
        assert snapshot["ledger_day_net"] == snapshot["stripe_day_net"]
        assert await ledger_invariants(session) == []

    async def test_missing_entry_extra_object_and_changed_amount_are_exactly_listed(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        direct_day: DirectDay,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        assert ours(await reconcile(client, seeded_day)) == []

        # 1. the ledger lost the sandbox-shaped payment's entries (payment and refund)
        await remove_ledger_entry(session, f"stripe:payment:{direct_day.sandbox}")
        await remove_ledger_entry(session, f"stripe:refund:{seeded_day.sid('re_dB')}")
        # 2. Stripe reports a refund the ledger never heard of
        ghost = {"id": seeded_day.sid("re_ghost"), "object": "refund", "payment_intent": None}
        stripe_day.transactions.append(
            balance_transaction(
                seeded_day.sid("txn_ghost"), "refund", -700, ghost, seeded_day.created
            )
        )
        # 3. the real-shaped payment's application fee is 5.10 at Stripe
        fee = next(t for t in stripe_day.transactions if t["id"] == seeded_day.sid("txn_fee_dA"))
        fee.update(amount=510, net=510)

        broken = await reconcile(client, seeded_day)

        assert ours(broken) == [
            ("amount_differs", "direct_payment", direct_day.real),
            ("missing_in_ledger", "direct_payment", direct_day.sandbox),
            ("missing_in_ledger", "refund", seeded_day.sid("re_ghost")),
        ]
        differs = next(
            m
            for m in broken["mismatches"]
            if m["kind"] == "amount_differs" and m["currency"] == CURRENCY
        )
        assert (differs["stripe_amount"], differs["ledger_amount"]) == (310, 300)
        assert len(differs["balance_transaction_ids"]) == 6
        assert len(differs["ledger_transaction_ids"]) == 2

    async def test_fee_refund_of_a_fee_taken_earlier_is_tied_through_stripe(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_mock: respx.MockRouter,
        direct_day: DirectDay,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        # The window does not hold the application fee this fee refund refunds (it was
        # taken on an earlier day): Stripe is asked which payment it came from.
        earlier = seeded_day.sid("fee_earlier")
        fee_refund = next(
            t for t in stripe_day.transactions if t["id"] == seeded_day.sid("txn_fr_dA")
        )
        fee_refund["source"] = {**fee_refund["source"], "fee": earlier}
        fee = {
            "id": earlier,
            "object": "application_fee",
            "amount": FEE,
            "currency": CURRENCY,
            "originating_transaction": {
                "id": seeded_day.sid("ch_dA"),
                "object": "charge",
                "payment_intent": direct_day.real,
            },
        }
        lookup = stripe_mock.get(f"/v1/application_fees/{earlier}").mock(
            return_value=httpx.Response(200, json=fee)
        )

        run = await reconcile(client, seeded_day)

        assert ours(run) == []
        assert lookup.call_count == 1
        assert lookup.calls.last.request.url.params["expand[0]"] == "originating_transaction"

        # Not found at Stripe: the fee refund stays its own object, listed.
        lookup.mock(
            return_value=httpx.Response(
                404,
                json={
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": f"No such application fee: '{earlier}'",
                    }
                },
            )
        )
        run = await reconcile(client, seeded_day)
        assert ours(run) == [
            ("amount_differs", "direct_payment", direct_day.real),
            ("missing_in_ledger", "application_fee_refund", seeded_day.sid("fr_dA")),
        ]
