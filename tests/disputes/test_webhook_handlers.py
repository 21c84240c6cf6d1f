"""Card disputes through signed Stripe events in Stripe's own shapes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import respx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.models import AuditLogEntry
from payments_api.disputes.models import Dispute
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.orders.models import Order
from payments_api.payout_accounts.models import PayoutAccount
from payments_api.users.models import User
from payments_api.webhooks.models import WebhookEvent
from tests.factories import emitted, ledger_invariants
from tests.helpers import auth, make_event, stripe_object
from tests.refunds.helpers import ADMIN, cause_count, deliver, paid_order, platform, wallet

FEE = 1_500  # Stripe's dispute fee


def balance_transaction(
    dispute_id: str, amount: int, fee: int, *, category: str, currency: str = "usd"
) -> dict[str, Any]:
    transaction = stripe_object("balance_transaction")
    transaction.update(
        id=f"txn_{uuid.uuid4().hex[:14]}",
        amount=amount,
        fee=fee,
        net=amount - fee,
        currency=currency,
        type="adjustment",
        reporting_category=category,
        source=dispute_id,
        fee_details=[{"amount": fee, "currency": currency, "type": "stripe_fee"}] if fee else [],
    )
    return transaction


def dispute(
    order: Order,
    dispute_id: str,
    status: str,
    *,
    amount: int | None = None,
    withdrawn: bool = True,
    reinstated: bool = False,
) -> dict[str, Any]:
    amount = amount if amount is not None else order.amount
    transactions = []
    if withdrawn:
        transactions.append(balance_transaction(dispute_id, -amount, FEE, category="dispute"))
    if reinstated:
        transactions.append(balance_transaction(dispute_id, amount, 0, category="dispute_reversal"))
    data = stripe_object("dispute")
    data.update(
        id=dispute_id,
        amount=amount,
        currency=order.currency,
        charge=f"ch_{order.id}",
        payment_intent=order.stripe_payment_intent_id,
        status=status,
        reason="fraudulent",
        balance_transactions=transactions,
    )
    return data


def event(kind: str, data: dict[str, Any], created: int) -> dict[str, Any]:
    return make_event(f"charge.dispute.{kind}", data, created=created)


async def the_dispute(session: AsyncSession, dispute_id: str) -> Dispute:
    row = await session.scalar(
        select(Dispute)
        .where(Dispute.stripe_dispute_id == dispute_id)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def the_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id, populate_existing=True)
    assert user is not None
    return user


async def spend(session: AsyncSession, user_id: str, amount: int) -> None:
    """The customer moves money out of available (into escrow for a job)."""
    await LedgerService(session).post(
        NewTransaction(
            type="escrow_hold",
            cause_type=CauseType.escrow,
            cause_key=f"test-spend:{uuid.uuid4().hex}",
            postings=[
                PostingSpec(AccountRef.user(user_id, AccountKind.available, "usd"), -amount),
                PostingSpec(AccountRef.user(user_id, AccountKind.escrow, "usd"), amount),
            ],
        )
    )


class TestDisputeLifecycle:
    async def test_created_then_lost(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=5_000)
        dp = f"dp_lost_{order.id}"
        stripe_before = await platform(session, AccountKind.stripe_balance)
        t0 = int(time.time())

        created = event("created", dispute(order, dp, "needs_response", amount=2_000), t0)
        assert (await deliver(client, created)).json()["status"] == "processed"

        row = await the_dispute(session, dp)
        assert (row.status, row.withdrawn_amount, row.fee_amount) == ("needs_response", 3_500, FEE)
        assert (await wallet(session, order.user_id))["available"] == 1_500
        assert await platform(session, AccountKind.stripe_balance) == stripe_before + 3_500
        user = await the_user(session, order.user_id)
        assert (user.frozen, user.frozen_reason) == (True, f"dispute:{dp}")
        freeze = await session.scalar(
            select(AuditLogEntry).where(
                AuditLogEntry.action == "wallet.freeze", AuditLogEntry.target_id == user.id
            )
        )
        assert freeze is not None
        assert freeze.after == {"frozen": True, "frozen_reason": f"dispute:{dp}"}

        updated = event("updated", dispute(order, dp, "under_review", amount=2_000), t0 + 10)
        closed = event("closed", dispute(order, dp, "lost", amount=2_000), t0 + 20)
        for delivered in (updated, closed, closed):
            assert (await deliver(client, delivered)).status_code == 200

        row = await the_dispute(session, dp)
        assert (row.status, row.platform_loss_amount) == ("lost", 0)
        assert row.closed_at is not None
        # Final: nothing more moved, and the wallet stays frozen for an admin to decide.
        assert (await wallet(session, order.user_id))["available"] == 1_500
        assert await cause_count(session, f"stripe:dispute:{dp}:%") == 1
        assert await cause_count(session, f"dispute:{dp}:%") == 1
        assert (await the_user(session, order.user_id)).frozen
        assert await ledger_invariants(session) == []
        disputes = [e for e in await emitted(session, order.user_id) if e[0].startswith("dispute")]
        assert [(kind, payload["status"]) for kind, payload in disputes] == [
            ("dispute.created", "needs_response"),
            ("dispute.closed", "lost"),
        ]

    async def test_created_then_won(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=5_000)
        dp = f"dp_won_{order.id}"
        stripe_before = await platform(session, AccountKind.stripe_balance)
        disputes_before = await platform(session, AccountKind.disputes)
        t0 = int(time.time())

        await deliver(client, event("created", dispute(order, dp, "needs_response"), t0))
        assert (await wallet(session, order.user_id))["available"] == -1_500
        reinstated = dispute(order, dp, "won", reinstated=True)
        for kind, at in (("funds_reinstated", t0 + 5), ("closed", t0 + 6)):
            assert (await deliver(client, event(kind, reinstated, at))).status_code == 200

        row = await the_dispute(session, dp)
        assert (row.status, row.reinstated_amount) == ("won", 5_000)
        # The customer is made whole; the dispute fee Stripe kept is the platform's cost.
        assert (await wallet(session, order.user_id))["available"] == 5_000
        assert await platform(session, AccountKind.stripe_balance) == stripe_before + FEE
        assert await platform(session, AccountKind.disputes) == disputes_before - FEE
        user = await the_user(session, order.user_id)
        assert (user.frozen, user.frozen_reason) == (False, None)
        assert await cause_count(session, f"stripe:dispute:{dp}:funds_reinstated") == 1
        assert await cause_count(session, f"dispute:{dp}:credit") == 1
        assert await ledger_invariants(session) == []

    async def test_dispute_on_an_empty_wallet_goes_negative_and_blocks_withdrawals(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=2_000)
        await spend(session, order.user_id, 2_000)
        dp = f"dp_empty_{order.id}"

        created = event("created", dispute(order, dp, "needs_response"), int(time.time()))
        assert (await deliver(client, created)).json()["status"] == "processed"

        assert await wallet(session, order.user_id) == {
            "available": -3_500,
            "escrow": 2_000,
            "withdrawing": 0,
        }
        balance = (await client.get("/api/v1/me/balance", headers=auth(order.user_id))).json()
        assert balance["frozen"] is True
        assert {b["currency"]: b["available"] for b in balance["balances"]}["usd"] == -3_500
        # With a payout account that could receive money, the freeze is what refuses it.
        session.add(
            PayoutAccount(
                user_id=order.user_id,
                stripe_account_id=f"acct_dispute{order.id}",
                status="enabled",
                charges_enabled=True,
                payouts_enabled=True,
                details_submitted=True,
                requirements_currently_due=[],
                requirements_past_due=[],
                requirements_pending_verification=[],
            )
        )
        await session.flush()
        withdrawal = await client.post(
            "/api/v1/me/payouts",
            json={"amount": 1_000, "currency": "usd"},
            headers={**auth(order.user_id, ["payee"]), "Idempotency-Key": "w-1"},
        )
        assert withdrawal.status_code == 409
        assert withdrawal.json()["code"] == "wallet_frozen"

        lost = event("closed", dispute(order, dp, "lost"), int(time.time()) + 30)
        await deliver(client, lost)
        row = await the_dispute(session, dp)
        assert (row.status, row.platform_loss_amount, row.user_debited_amount) == (
            "lost",
            3_500,
            3_500,
        )
        listed = await client.get(
            "/api/v1/admin/disputes", params={"status": "lost"}, headers=ADMIN
        )
        assert f"dsp_{row.id}" in [d["id"] for d in listed.json()["data"]]
        got = await client.get(f"/api/v1/admin/disputes/dsp_{row.id}", headers=ADMIN)
        assert got.json()["platform_loss_amount"] == 3_500

    async def test_inquiry_moves_nothing_until_funds_are_withdrawn(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=2_000)
        dp = f"dp_inquiry_{order.id}"
        t0 = int(time.time())
        inquiry = dispute(order, dp, "warning_needs_response", withdrawn=False)
        await deliver(client, event("created", inquiry, t0))
        assert (await wallet(session, order.user_id))["available"] == 2_000
        assert not (await the_user(session, order.user_id)).frozen

        # Escalated to a chargeback; this event's payload lacks the balance transaction,
        # so the dispute is fetched from Stripe.
        fetched = dispute(order, dp, "needs_response")
        fetch = stripe_mock.get(f"/v1/disputes/{dp}").mock(
            return_value=httpx.Response(200, json=fetched)
        )
        bare = dispute(order, dp, "needs_response", withdrawn=False)
        await deliver(client, event("funds_withdrawn", bare, t0 + 5))

        assert fetch.called
        assert (await wallet(session, order.user_id))["available"] == -1_500
        assert (await the_user(session, order.user_id)).frozen


class TestDisputeTransitions:
    async def test_illegal_transition_is_acknowledged_and_changes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=5_000)
        dp = f"dp_illegal_{order.id}"
        t0 = int(time.time())
        await deliver(client, event("created", dispute(order, dp, "needs_response"), t0))
        won = dispute(order, dp, "won", reinstated=True)
        await deliver(client, event("closed", won, t0 + 10))
        after_won = await wallet(session, order.user_id)

        lost_later = event("closed", dispute(order, dp, "lost", reinstated=True), t0 + 20)
        response = await deliver(client, lost_later)

        assert response.status_code == 200
        assert response.json()["status"] == "processed"
        stored = await session.get(WebhookEvent, lost_later["id"], populate_existing=True)
        assert stored is not None
        assert (stored.status, stored.attempts) == ("processed", 1)
        row = await the_dispute(session, dp)
        assert (row.status, row.platform_loss_amount) == ("won", None)
        assert await wallet(session, order.user_id) == after_won

    async def test_stale_event_does_not_overwrite_newer_state(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=5_000)
        dp = f"dp_stale_{order.id}"
        t0 = int(time.time())
        await deliver(client, event("created", dispute(order, dp, "needs_response"), t0))
        await deliver(client, event("updated", dispute(order, dp, "under_review"), t0 + 20))

        older = event("updated", dispute(order, dp, "needs_response"), t0 + 10)
        assert (await deliver(client, older)).status_code == 200

        assert (await the_dispute(session, dp)).status == "under_review"

    async def test_won_delivered_before_created_converges(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=5_000)
        dp = f"dp_reorder_{order.id}"
        t0 = int(time.time())
        won = event("closed", dispute(order, dp, "won", reinstated=True), t0 + 30)
        created = event("created", dispute(order, dp, "needs_response"), t0)

        for delivered in (won, created):
            assert (await deliver(client, delivered)).status_code == 200

        assert (await wallet(session, order.user_id))["available"] == 5_000
        assert not (await the_user(session, order.user_id)).frozen
        assert (await the_dispute(session, dp)).status == "won"
        assert await cause_count(session, f"stripe:dispute:{dp}:%") == 2

    async def test_won_leaves_an_admin_freeze_alone(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=5_000)
        frozen = await client.post(
            f"/api/v1/admin/wallets/{order.user_id}/freeze",
            json={"reason": "Suspected account takeover"},
            headers=ADMIN,
        )
        assert frozen.status_code == 200
        dp = f"dp_admin_{order.id}"
        t0 = int(time.time())
        await deliver(client, event("created", dispute(order, dp, "needs_response"), t0))
        await deliver(client, event("closed", dispute(order, dp, "won", reinstated=True), t0 + 9))

        user = await the_user(session, order.user_id)
        assert (user.frozen, user.frozen_reason) == (True, "Suspected account takeover")

    async def test_second_open_dispute_keeps_the_wallet_frozen(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        first = await paid_order(client, session, amount=5_000)
        second = await paid_order(client, session, user_id=first.user_id, amount=5_000)
        t0 = int(time.time())
        await deliver(
            client, event("created", dispute(first, f"dp_a_{first.id}", "needs_response"), t0)
        )
        await deliver(
            client, event("created", dispute(second, f"dp_b_{second.id}", "needs_response"), t0)
        )
        won = dispute(first, f"dp_a_{first.id}", "won", reinstated=True)
        await deliver(client, event("closed", won, t0 + 5))

        assert (await the_user(session, first.user_id)).frozen
