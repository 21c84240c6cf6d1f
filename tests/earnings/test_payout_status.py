"""Earnings' payout_status, derived from withdrawals, bank payouts and refunds: first in,
first out per currency, exact to the minor unit in the summary."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.earnings.models import EarningSource
from payments_api.earnings.payout_status import EarningsPayoutStatus as S
from payments_api.earnings.payout_status import Entry, Flows, attribute
from payments_api.earnings.service import EarningsService, NewEarning
from payments_api.payouts.models import Payout, Withdrawal
from tests.factories import create_user
from tests.helpers import auth

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


class TestAttribution:
    def test_wallet_then_account_oldest_first(self) -> None:
        entries = [
            Entry(1, True, "usd", 3_000, 0, at(1)),  # escrow take
            Entry(2, False, "usd", 4_000, 1_000, at(2)),  # direct, 10.00 refunded
            Entry(3, True, "usd", 5_000, 0, at(3)),
            Entry(4, False, "usd", 2_000, 2_000, at(4)),  # direct, fully refunded
            Entry(5, True, "usd", 2_000, 0, at(5)),
            Entry(6, True, "eur", 1_000, 0, at(6)),
        ]
        flows = {"usd": Flows(transferred=4_000, withdrawing=3_000, paid=5_000)}

        result = attribute(entries, flows)

        assert result.status == {
            1: S.paid,  # withdrawn first, paid out first
            2: S.in_transit,  # 20.00 of its 30.00 paid out
            3: S.available,  # 10.00 reached the account, 30.00 withdrawing, 10.00 left
            4: S.reversed,
            5: S.available,
            6: S.available,
        }
        assert result.parts[3] == {
            S.available: 1_000,
            S.withdrawing: 3_000,
            S.in_transit: 1_000,
            S.paid: 0,
            S.reversed: 0,
        }
        totals = result.totals(entries)
        assert totals["usd"] == {
            S.available: 3_000,
            S.withdrawing: 3_000,
            S.in_transit: 2_000,
            S.paid: 5_000,
            S.reversed: 3_000,
        }
        assert sum(totals["usd"].values()) == 16_000  # every unit earned, once
        assert totals["eur"][S.available] == 1_000

    def test_nothing_happened_yet(self) -> None:
        result = attribute([Entry(1, True, "usd", 500, 0, at(1))], {})
        assert result.status == {1: S.available}
        direct = attribute([Entry(2, False, "usd", 500, 0, at(1))], {})
        assert direct.status == {2: S.in_transit}


async def _earn(session: AsyncSession, payee: str, hours: int, amount: int) -> None:
    await EarningsService(session).record(
        NewEarning(
            payee_id=payee,
            source=EarningSource.escrow,
            source_id=f"esc_{uuid.uuid4().hex[:8]}",
            amount=amount,
            currency="usd",
            earned_at=datetime.now(UTC) - timedelta(days=3) + timedelta(hours=hours),
        )
    )


class TestEarningsRoute:
    async def test_statuses_and_summary_follow_withdrawals_and_payouts(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        payee = f"payee_ps_{uuid.uuid4().hex[:8]}"
        await create_user(session, id=payee, roles=["payee"])
        for hours, amount in ((1, 4_000), (2, 3_000), (3, 2_000), (4, 1_000)):
            await _earn(session, payee, hours, amount)
        account = f"acct_{uuid.uuid4().hex[:12]}"
        for amount, status, reversed_ in ((5_000, "transferred", 0), (2_500, "reversed", 500)):
            session.add(
                Withdrawal(
                    user_id=payee,
                    amount=amount,
                    currency="usd",
                    status=status,
                    amount_reversed=reversed_,
                    stripe_account_id=account,
                    idempotency_key=uuid.uuid4().hex,
                    request_fingerprint="0" * 64,
                )
            )
        session.add(
            Withdrawal(
                user_id=payee,
                amount=1_500,
                currency="usd",
                status="pending",
                stripe_account_id=account,
                idempotency_key=uuid.uuid4().hex,
                request_fingerprint="0" * 64,
            )
        )
        for amount, status in ((3_000, "paid"), (2_000, "in_transit"), (400, "failed")):
            session.add(
                Payout(
                    stripe_payout_id=f"po_{uuid.uuid4().hex[:12]}",
                    stripe_account_id=account,
                    user_id=payee,
                    amount=amount,
                    currency="usd",
                    status=status,
                    created=datetime.now(UTC),
                    event_created=datetime.now(UTC),
                )
            )
        await session.flush()

        response = await client.get("/api/v1/me/earnings", headers=auth(payee, ["payee"]))

        assert response.status_code == 200, response.text
        body = response.json()
        # transferred 50.00 + 20.00 (25.00 less 5.00 reversed); 15.00 withdrawing; 30.00 paid
        assert [(e["amount"], e["payout_status"]) for e in body["data"]] == [
            (1_000, "available"),
            (2_000, "available"),  # 15.00 of it withdrawing, its last 5.00 in the wallet
            (3_000, "in_transit"),  # transferred: 70.00 in all
            (4_000, "in_transit"),  # 30.00 of it paid out, the last 10.00 not yet
        ]
        [summary] = body["summary"]
        assert summary["by_payout_status"] == {
            "available": 1_500,
            "withdrawing": 1_500,
            "in_transit": 4_000,
            "paid": 3_000,
            "reversed": 0,
        }
        assert sum(summary["by_payout_status"].values()) == summary["all_time"] == 10_000
