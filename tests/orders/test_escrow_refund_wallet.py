"""A completed job paid from the wallet is refunded through `POST /api/v1/admin/refunds`
(named by `escrow_id`: it has no order): the settlement is reversed in proportion (the
payee's take, the platform's fees; the platform covers what the payee withdrew since)
straight back into the customer's wallet, with no Stripe call since no card was charged.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import respx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from tests.factories import create_user, emitted, fund, ledger_invariants
from tests.helpers import auth
from tests.orders.test_escrow_refund_completed import act
from tests.orders.test_escrow_refund_completed import completed as card_completed
from tests.orders.test_escrow_refund_to_card import stripe_refunds
from tests.projects.conftest import ledger_postings
from tests.refunds.helpers import ADMIN, form, platform, wallet

REFUNDS = "/api/v1/admin/refunds"


async def refund(
    client: httpx.AsyncClient, escrow_id: str, key: str | None = None, **body: Any
) -> httpx.Response:
    return await client.post(
        REFUNDS,
        json={"escrow_id": escrow_id, **body},
        headers={**ADMIN, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def wallet_escrow(
    client: httpx.AsyncClient,
    session: AsyncSession,
    customer: str,
    payee: str,
    *,
    complete: bool = True,
) -> str:
    """A 100.00 job paid from the wallet (105.00 held); accepted and completed: payee
    +80.00, platform fees 5.00 + 20.00. The customer's wallet is then empty."""
    await create_user(session, id=customer, roles=["customer"])
    await create_user(session, id=payee, roles=["payee"])
    await fund(session, customer, 10_500)
    response = await client.post(
        "/api/v1/escrows",
        json={"payee_id": payee, "amount": 10_000, "currency": "usd", "reference": "job-w"},
        headers={**auth(customer, ["customer"]), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    escrow_id = str(response.json()["id"])
    if complete:
        await act(client, escrow_id, "accept", payee, "payee")
        await act(client, escrow_id, "complete", customer, "customer")
    return escrow_id


class TestWalletEscrowRefund:
    async def test_partial_then_full_reverse_the_settlement_into_the_wallet(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, session: AsyncSession
    ) -> None:
        escrow_id = await wallet_escrow(client, session, "wer_cust", "wer_payee")
        fees_before = await platform(session, AccountKind.platform_fees)
        stripe_before = await platform(session, AccountKind.stripe_balance)
        assert (await wallet(session, "wer_cust"))["available"] == 0

        # 33.33 of 105.00: the payee's 80/105 -> 25.394 -> 2,539; fees 794
        key = uuid.uuid4().hex
        first = await refund(client, escrow_id, key, amount=3_333, note="job not done")

        assert first.status_code == 201, first.text
        body = first.json()
        assert body["id"].startswith("rfe_")
        assert (body["order_id"], body["escrow_id"], body["user_id"]) == (
            None,
            escrow_id,
            "wer_cust",
        )
        assert (body["amount"], body["status"], body["payee_share"], body["held_amount"]) == (
            3_333,
            "succeeded",
            2_539,
            0,
        )
        rid = int(body["id"].removeprefix("rfe_"))
        assert sorted(await ledger_postings(session, f"escrow_refund:{rid}:reversal")) == [
            ("available", -2_539),
            ("available", 3_333),
            ("platform_fees", -794),
        ]
        assert await wallet(session, "wer_cust") == {
            "available": 3_333,
            "escrow": 0,
            "withdrawing": 0,
        }
        assert (await wallet(session, "wer_payee"))["available"] == 8_000 - 2_539
        assert await platform(session, AccountKind.platform_fees) == fees_before - 794
        # no card was charged: Stripe is not called and its mirror does not move
        assert not stripe_mock.calls
        assert await platform(session, AccountKind.stripe_balance) == stripe_before
        events = [p for t, p in await emitted(session, "wer_cust") if t == "refund.succeeded"]
        assert [e["id"] for e in events] == [body["id"]]
        earnings = await client.get("/api/v1/me/earnings", headers=auth("wer_payee", ["payee"]))
        assert earnings.json()["summary"][0]["by_payout_status"]["reversed"] == 2_539

        # the same key replays the same refund, nothing moves twice
        again = await refund(client, escrow_id, key, amount=3_333, note="job not done")
        assert (again.status_code, again.json()["id"]) == (201, body["id"])
        assert (await wallet(session, "wer_cust"))["available"] == 3_333
        reused = await refund(client, escrow_id, key, amount=100)
        assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
        got = await client.get(f"{REFUNDS}/{body['id']}", headers=ADMIN)
        assert (got.status_code, got.json()) == (200, body)

        rest = await refund(client, escrow_id)
        assert rest.status_code == 201, rest.text
        assert (rest.json()["amount"], rest.json()["payee_share"]) == (7_167, 5_461)
        assert (await wallet(session, "wer_payee"))["available"] == 0
        assert (await wallet(session, "wer_cust"))["available"] == 10_500
        assert await platform(session, AccountKind.platform_fees) == fees_before - 2_500

        over = await refund(client, escrow_id, amount=1)
        assert (over.status_code, over.json()["code"]) == (409, "refund_exceeds_refundable")
        assert over.json()["refundable"] == 0
        assert not stripe_mock.calls
        assert await ledger_invariants(session) == []

        # the job's refunds are listed by escrow_id, newest first, with an rfe_ cursor
        listed = await client.get(REFUNDS, params={"escrow_id": escrow_id}, headers=ADMIN)
        assert listed.status_code == 200, listed.text
        assert [r["id"] for r in listed.json()["data"]] == [rest.json()["id"], body["id"]]
        page = await client.get(REFUNDS, params={"escrow_id": escrow_id, "limit": 1}, headers=ADMIN)
        assert ([r["id"] for r in page.json()["data"]], page.json()["has_more"]) == (
            [rest.json()["id"]],
            True,
        )
        after = await client.get(
            REFUNDS,
            params={"escrow_id": escrow_id, "starting_after": rest.json()["id"]},
            headers=ADMIN,
        )
        assert ([r["id"] for r in after.json()["data"]], after.json()["has_more"]) == (
            [body["id"]],
            False,
        )
        failed = await client.get(
            REFUNDS, params={"escrow_id": escrow_id, "status": "failed"}, headers=ADMIN
        )
        assert failed.json()["data"] == []

    async def test_a_payee_who_withdrew_is_covered_by_the_platform(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, session: AsyncSession
    ) -> None:
        escrow_id = await wallet_escrow(client, session, "wer_cust2", "wer_payee2")
        await LedgerService(session).post(
            NewTransaction(
                type="withdrawal_hold",
                cause_type=CauseType.withdrawal,
                cause_key="test:withdraw:wer_payee2",
                postings=[
                    PostingSpec(
                        AccountRef.user("wer_payee2", AccountKind.available, "usd"), -7_000
                    ),
                    PostingSpec(
                        AccountRef.user("wer_payee2", AccountKind.withdrawing, "usd"), 7_000
                    ),
                ],
            )
        )

        response = await refund(client, escrow_id)

        assert response.status_code == 201, response.text
        rid = int(response.json()["id"].removeprefix("rfe_"))
        assert sorted(await ledger_postings(session, f"escrow_refund:{rid}:reversal")) == [
            ("adjustments", -7_000),
            ("available", -1_000),
            ("available", 10_500),
            ("platform_fees", -2_500),
        ]
        assert (await wallet(session, "wer_payee2"))["available"] == 0
        assert (await wallet(session, "wer_cust2"))["available"] == 10_500
        assert await ledger_invariants(session) == []

    async def test_refused_before_completion_and_for_an_unknown_job(
        self, client: httpx.AsyncClient, stripe_mock: respx.MockRouter, session: AsyncSession
    ) -> None:
        escrow_id = await wallet_escrow(client, session, "wer_c3", "wer_p3", complete=False)

        early = await refund(client, escrow_id)
        assert (early.status_code, early.json()["code"]) == (409, "refund_not_supported")
        assert early.json()["escrow_status"] == "created"
        unknown = await refund(client, "esc_999999999")
        assert (unknown.status_code, unknown.json()["code"]) == (404, "escrow_not_found")
        both = await client.post(
            REFUNDS,
            json={"escrow_id": escrow_id, "order_id": "ord_1"},
            headers={**ADMIN, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert (both.status_code, both.json()["code"]) == (422, "validation_error")
        assert (await wallet(session, "wer_c3"))["escrow"] == 10_500
        assert not stripe_mock.calls

    async def test_a_job_paid_by_card_named_by_escrow_id_refunds_its_order(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        escrow_id, order_id, pi = await card_completed(client, session, "wer_c4", "wer_p4")
        route = stripe_refunds(stripe_payins)

        response = await refund(client, escrow_id, amount=3_333)

        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["order_id"], body["payee_share"]) == (f"ord_{order_id}", 2_539)
        assert body["id"].startswith("rfd_")
        assert form(route.calls.last.request)["payment_intent"] == pi
        assert await ledger_invariants(session) == []
        # listed by escrow_id: the funding order's refund
        listed = await client.get(REFUNDS, params={"escrow_id": escrow_id}, headers=ADMIN)
        assert [r["id"] for r in listed.json()["data"]] == [body["id"]]
        unknown = await client.get(REFUNDS, params={"escrow_id": "esc_999999"}, headers=ADMIN)
        assert (unknown.status_code, unknown.json()["data"]) == (200, [])
