"""A completed job paid by card is refunded through `POST /api/v1/admin/refunds`: the
settlement is reversed in proportion (payee's take, platform's fees; the platform covers
what the payee withdrew since), held in the customer's withdrawing, then the card is
refunded by Stripe with a key derived from the refund."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import respx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from tests.factories import ledger_invariants
from tests.helpers import auth, stripe_key
from tests.orders.test_escrow_refund_to_card import card_escrow, stripe_refunds
from tests.projects.conftest import ledger_postings
from tests.refunds.helpers import ADMIN, form, platform, wallet


async def act(client: httpx.AsyncClient, escrow_id: str, action: str, user: str, role: str) -> None:
    response = await client.post(
        f"/api/v1/escrows/{escrow_id}/{action}",
        json={},
        headers={**auth(user, [role]), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 200, response.text


async def refund(client: httpx.AsyncClient, order_id: int, **body: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/admin/refunds",
        json={"order_id": f"ord_{order_id}", **body},
        headers={**ADMIN, "Idempotency-Key": uuid.uuid4().hex},
    )


async def completed(
    client: httpx.AsyncClient, session: AsyncSession, customer: str, payee: str
) -> tuple[str, int, str]:
    """A 100.00 job paid by card (105.00), accepted and completed: payee +80.00,
    platform fees 5.00 + 20.00."""
    escrow_id, order = await card_escrow(client, session, customer, payee)
    await act(client, escrow_id, "accept", payee, "payee")
    await act(client, escrow_id, "complete", customer, "customer")
    assert order.stripe_payment_intent_id is not None
    return escrow_id, order.id, order.stripe_payment_intent_id


class TestCompletedEscrowRefund:
    async def test_partial_then_full_reverses_the_settlement_in_proportion(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        _escrow, order_id, pi = await completed(client, session, "cer_cust", "cer_payee")
        fees_before = await platform(session, AccountKind.platform_fees)
        route = stripe_refunds(stripe_payins)

        # 33.33 of 105.00: the payee's 80/105 -> 25.394 -> 2,539; fees 794
        first = await refund(client, order_id, amount=3_333)

        assert first.status_code == 201, first.text
        body = first.json()
        assert (body["status"], body["payee_share"]) == ("succeeded", 2_539)
        rid = int(body["id"].removeprefix("rfd_"))
        call = route.calls.last.request
        assert call.headers["Idempotency-Key"] == stripe_key("refund", rid)
        assert "Stripe-Account" not in call.headers
        sent = form(call)
        assert (sent["payment_intent"], sent["amount"]) == (pi, "3333")
        assert "reverse_transfer" not in sent
        assert sorted(await ledger_postings(session, f"refund:{rid}:reversal")) == [
            ("available", -2_539),
            ("platform_fees", -794),
            ("withdrawing", 3_333),
        ]
        assert sorted(
            await ledger_postings(session, f"stripe:refund:{body['stripe_refund_id']}")
        ) == [
            ("stripe_balance", 3_333),
            ("withdrawing", -3_333),
        ]
        assert (await wallet(session, "cer_payee"))["available"] == 8_000 - 2_539
        earnings = await client.get("/api/v1/me/earnings", headers=auth("cer_payee", ["payee"]))
        [entry] = earnings.json()["data"]
        assert (entry["amount"], entry["payout_status"]) == (8_000, "available")
        assert earnings.json()["summary"][0]["by_payout_status"]["reversed"] == 2_539

        rest = await refund(client, order_id)
        assert rest.status_code == 201, rest.text
        assert (rest.json()["amount"], rest.json()["payee_share"]) == (7_167, 5_461)
        assert (await wallet(session, "cer_payee"))["available"] == 0
        earnings = await client.get("/api/v1/me/earnings", headers=auth("cer_payee", ["payee"]))
        assert [e["payout_status"] for e in earnings.json()["data"]] == ["reversed"]
        assert await platform(session, AccountKind.platform_fees) == fees_before - 2_500
        assert await wallet(session, "cer_cust") == {"available": 0, "escrow": 0, "withdrawing": 0}

        over = await refund(client, order_id, amount=1)
        assert (over.status_code, over.json()["code"]) == (409, "refund_exceeds_refundable")
        assert route.call_count == 2
        assert await ledger_invariants(session) == []

    async def test_a_payee_who_withdrew_is_covered_by_the_platform(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        _escrow, order_id, _pi = await completed(client, session, "cer_cust2", "cer_payee2")
        await LedgerService(session).post(
            NewTransaction(
                type="withdrawal_hold",
                cause_type=CauseType.withdrawal,
                cause_key="test:withdraw:cer_payee2",
                postings=[
                    PostingSpec(
                        AccountRef.user("cer_payee2", AccountKind.available, "usd"), -7_000
                    ),
                    PostingSpec(
                        AccountRef.user("cer_payee2", AccountKind.withdrawing, "usd"), 7_000
                    ),
                ],
            )
        )
        stripe_refunds(stripe_payins)

        response = await refund(client, order_id)

        assert response.status_code == 201, response.text
        rid = int(response.json()["id"].removeprefix("rfd_"))
        assert sorted(await ledger_postings(session, f"refund:{rid}:reversal")) == [
            ("adjustments", -7_000),
            ("available", -1_000),
            ("platform_fees", -2_500),
            ("withdrawing", 10_500),
        ]
        assert (await wallet(session, "cer_payee2"))["available"] == 0
        assert await ledger_invariants(session) == []

    async def test_stripe_refusing_leaves_the_reversed_money_in_the_customer_wallet(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        _escrow, order_id, _pi = await completed(client, session, "cer_cust3", "cer_payee3")
        stripe_payins.post("/v1/refunds").mock(
            return_value=httpx.Response(
                400,
                json={"error": {"type": "invalid_request_error", "code": "charge_disputed"}},
            )
        )
        response = await refund(client, order_id)
        assert (response.status_code, response.json()["code"]) == (409, "refund_rejected")
        assert await wallet(session, "cer_cust3") == {
            "available": 10_500,
            "escrow": 0,
            "withdrawing": 0,
        }
        # reversed once: a second refund cannot take the payee's share again
        again = await refund(client, order_id)
        assert (again.status_code, again.json()["code"]) == (409, "refund_exceeds_refundable")
        assert await ledger_invariants(session) == []

    async def test_an_escrow_not_completed_is_not_refunded_here(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        escrow_id, order = await card_escrow(client, session, "cer_cust4", "cer_payee4")
        await act(client, escrow_id, "accept", "cer_payee4", "payee")
        route = stripe_refunds(stripe_payins)
        response = await refund(client, order.id)
        assert response.status_code == 409, response.text
        assert (response.json()["code"], response.json()["escrow_status"]) == (
            "refund_not_supported",
            "accepted",
        )
        assert route.call_count == 0
