"""Refunds Stripe reports without our API call (made in the Stripe dashboard)."""

from __future__ import annotations

from typing import Any

import httpx
import respx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.orders.models import Order
from payments_api.orders.refund_models import Refund
from tests.factories import ledger_invariants
from tests.helpers import make_event, stripe_object
from tests.refunds.helpers import (
    cause_count,
    deliver,
    paid_order,
    platform,
    reload,
    stripe_refund,
    wallet,
)


def refunded_charge(order: Order, charge_id: str) -> dict[str, Any]:
    charge = stripe_object("charge")
    charge.update(
        id=charge_id,
        amount=order.amount,
        currency=order.currency,
        payment_intent=order.stripe_payment_intent_id,
        refunded=False,
    )
    charge.pop("refunds")  # not embedded since API version 2022-11-15
    return charge


def refund_list(*refunds: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        200, json={"object": "list", "data": list(refunds), "has_more": False, "url": "/v1/refunds"}
    )


async def recorded(session: AsyncSession, stripe_id: str) -> Refund | None:
    result: Refund | None = await session.scalar(
        select(Refund)
        .where(Refund.stripe_refund_id == stripe_id)
        .execution_options(populate_existing=True)
    )
    return result


class TestDashboardRefund:
    async def test_charge_refunded_with_an_unknown_refund_is_recorded_once(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=2_000)
        charge_id = f"ch_dash_{order.id}"
        dashboard = stripe_refund(
            refund_id=f"re_dash_{order.id}",
            amount=700,
            payment_intent=str(order.stripe_payment_intent_id),
            charge=charge_id,
        )
        listing = stripe_mock.get("/v1/refunds").mock(return_value=refund_list(dashboard))

        event = make_event("charge.refunded", refunded_charge(order, charge_id))
        assert (await deliver(client, event)).json()["status"] == "processed"

        assert listing.calls.last.request.url.params["charge"] == charge_id
        row = await recorded(session, dashboard["id"])
        assert row is not None
        assert (row.origin, row.status, row.amount, row.requested_by) == (
            "stripe",
            "succeeded",
            700,
            None,
        )
        assert (await wallet(session, order.user_id))["available"] == 1_300
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("partially_refunded", 700)

        # The same refund again, through both event types: nothing more moves.
        await deliver(client, event)
        await deliver(client, make_event("refund.created", dashboard))
        await deliver(client, make_event("refund.updated", dashboard))
        assert await cause_count(session, f"stripe:refund:{dashboard['id']}") == 1
        assert (await reload(session, order)).refunded_amount == 700
        assert (await wallet(session, order.user_id))["available"] == 1_300
        assert await ledger_invariants(session) == []

    async def test_refund_event_without_payment_intent_finds_the_order_by_its_charge(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=2_000)
        charge = refunded_charge(order, f"ch_lookup_{order.id}")
        charge_route = stripe_mock.get(f"/v1/charges/{charge['id']}").mock(
            return_value=httpx.Response(200, json=charge)
        )
        refund = stripe_refund(
            refund_id=f"re_nopi_{order.id}",
            amount=2_000,
            payment_intent="",
            charge=charge["id"],
        )
        refund["payment_intent"] = None

        assert (await deliver(client, make_event("refund.created", refund))).status_code == 200

        assert charge_route.called
        assert (await reload(session, order)).status == "refunded"
        assert (await wallet(session, order.user_id))["available"] == 0

    async def test_shortfall_of_a_spent_wallet_is_booked_to_adjustments(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=2_000)
        await LedgerService(session).post(
            NewTransaction(
                type="escrow_hold",
                cause_type=CauseType.escrow,
                cause_key=f"test-spend:{order.id}",
                postings=[
                    PostingSpec(
                        AccountRef.user(order.user_id, AccountKind.available, "usd"), -1_800
                    ),
                    PostingSpec(AccountRef.user(order.user_id, AccountKind.escrow, "usd"), 1_800),
                ],
            )
        )
        adjustments = await platform(session, AccountKind.adjustments)
        dashboard = stripe_refund(
            refund_id=f"re_short_{order.id}",
            amount=1_000,
            payment_intent=str(order.stripe_payment_intent_id),
        )

        assert (await deliver(client, make_event("refund.updated", dashboard))).status_code == 200

        # Stripe has paid the customer already: recorded anyway, never a retry loop.
        assert await wallet(session, order.user_id) == {
            "available": 0,
            "escrow": 1_800,
            "withdrawing": 0,
        }
        assert await platform(session, AccountKind.adjustments) == adjustments - 800
        assert (await reload(session, order)).refunded_amount == 1_000
        assert await ledger_invariants(session) == []

    async def test_refund_of_a_payment_that_is_not_ours_is_acknowledged(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        foreign = stripe_refund(
            refund_id="re_foreign_1", amount=500, payment_intent="pi_not_ours_at_all"
        )

        response = await deliver(client, make_event("refund.created", foreign))

        assert response.status_code == 200
        assert await recorded(session, "re_foreign_1") is None
        assert await cause_count(session, "stripe:refund:re_foreign_1") == 0
