"""A seeded day: the ledger entries the domains write and the balance transactions Stripe
reports for the same objects, in a currency of these tests (nzd) so committed entries of
other tests never mix in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from tests.factories import create_user
from tests.helpers import stripe_object

CURRENCY = "nzd"


def _platform(kind: AccountKind) -> AccountRef:
    return AccountRef.platform(kind, CURRENCY)


def balance_transaction(
    txn: str, kind: str, amount: int, source: Any, created: int, fee: int = 0, **extra: Any
) -> dict[str, Any]:
    transaction = stripe_object("balance_transaction")
    transaction.update(
        id=txn,
        type=kind,
        amount=amount,
        fee=fee,
        net=amount - fee,
        currency=CURRENCY,
        source=source,
        created=created,
        available_on=created,
        **extra,
    )
    return transaction


@dataclass
class SeededDay:
    day: date
    created: int
    """Unix time of the seeded objects (the test transaction's clock)."""
    suffix: str
    transactions: list[dict[str, Any]] = field(default_factory=list)

    def sid(self, prefix: str) -> str:
        return f"{prefix}_{self.suffix}"


async def db_now(session: AsyncSession) -> datetime:
    now: datetime = await session.scalar(text("SELECT now()"))
    return now.astimezone(UTC)


@pytest.fixture
async def seeded_day(session: AsyncSession) -> SeededDay:
    """What a day's flows write to the ledger (same cause keys and metadata as the
    domains), and Stripe's matching balance transactions."""
    now = await db_now(session)
    seeded = SeededDay(day=now.date(), created=int(now.timestamp()), suffix=uuid.uuid4().hex[:8])
    user = await create_user(session)
    ledger = LedgerService(session)
    available = AccountRef.user(user.id, AccountKind.available, CURRENCY)
    withdrawing = AccountRef.user(user.id, AccountKind.withdrawing, CURRENCY)
    stripe = _platform(AccountKind.stripe_balance)
    pi, ch, re, dp, tr = (seeded.sid(p) for p in ("pi", "ch", "re", "dp", "tr"))
    charge_txn, withdrawal = seeded.sid("txn_ch"), seeded.sid("wd")

    async def post(cause_key: str, *postings: tuple[AccountRef, int], **metadata: Any) -> None:
        await ledger.post(
            NewTransaction(
                type="seed",
                cause_type=CauseType.stripe_event,
                cause_key=cause_key,
                metadata=metadata,
                postings=[PostingSpec(ref, amount) for ref, amount in postings],
            )
        )

    # pay-in of 100.00, Stripe's fee 3.20 (orders)
    await post(f"stripe:payment:{pi}", (available, 10_000), (stripe, -10_000))
    await post(
        f"stripe:fee:{charge_txn}",
        (stripe, 320),
        (_platform(AccountKind.processing_fees), -320),
        charge=ch,
    )
    # a refund of 20.00 (refunds)
    await post(f"stripe:refund:{re}", (available, -2_000), (stripe, 2_000))
    # a chargeback of 20.00 plus a 15.00 fee (disputes)
    await post(
        f"stripe:dispute:{dp}:funds_withdrawn",
        (stripe, 3_500),
        (_platform(AccountKind.disputes), -3_500),
    )
    # a withdrawal of 15.00 transferred to a connected account (payouts)
    await post(f"withdrawal:{withdrawal}:hold", (available, -1_500), (withdrawing, 1_500))
    await post(
        f"withdrawal:{withdrawal}:transferred",
        (withdrawing, -1_500),
        (stripe, 1_500),
        withdrawal_id=withdrawal,
        transfer=tr,
    )
    # a manual correction of the Stripe mirror: no Stripe object, never a mismatch
    await post(
        f"admin_adjustment:admin_1:{seeded.suffix}",
        (stripe, 5),
        (_platform(AccountKind.adjustments), -5),
        reason="rounding",
    )
    at = seeded.created
    charge = stripe_object("charge")
    charge.update(id=ch, payment_intent=pi, currency=CURRENCY, amount=10_000)
    seeded.transactions = [
        balance_transaction(charge_txn, "charge", 10_000, charge, at, fee=320),
        balance_transaction(seeded.sid("txn_re"), "refund", -2_000, re, at),
        balance_transaction(
            seeded.sid("txn_dp"),
            "adjustment",
            -2_000,
            dp,
            at,
            fee=1_500,
            reporting_category="dispute",
        ),
        balance_transaction(seeded.sid("txn_tr"), "transfer", -1_500, tr, at),
        balance_transaction(seeded.sid("txn_po"), "payout", -4_000, seeded.sid("po"), at),
    ]
    return seeded


def list_page(data: list[dict[str, Any]], has_more: bool, url: str) -> httpx.Response:
    return httpx.Response(
        200, json={"object": "list", "data": data, "has_more": has_more, "url": url}
    )


@dataclass
class StripeDay:
    transactions: list[dict[str, Any]]
    undelivered: list[dict[str, Any]]
    balance: dict[str, Any]
    routes: dict[str, respx.Route]


@pytest.fixture
def stripe_day(stripe_mock: respx.MockRouter, seeded_day: SeededDay) -> StripeDay:
    """Stripe's side of the seeded day, served in pages of two (auto-pagination)."""
    balance = stripe_object("balance")
    balance["available"] = [{"amount": 12_345, "currency": CURRENCY, "source_types": {}}]
    balance["pending"] = [{"amount": 0, "currency": CURRENCY, "source_types": {}}]
    day = StripeDay(
        transactions=list(seeded_day.transactions), undelivered=[], balance=balance, routes={}
    )

    def transactions(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("starting_after")
        ids = [t["id"] for t in day.transactions]
        start = ids.index(after) + 1 if after else 0
        page = day.transactions[start : start + 2]
        return list_page(page, start + 2 < len(ids), "/v1/balance_transactions")

    day.routes["balance"] = stripe_mock.get("/v1/balance").mock(
        side_effect=lambda _request: httpx.Response(200, json=day.balance)
    )
    day.routes["transactions"] = stripe_mock.get("/v1/balance_transactions").mock(
        side_effect=transactions
    )
    day.routes["events"] = stripe_mock.get("/v1/events").mock(
        side_effect=lambda _request: list_page(day.undelivered, False, "/v1/events")
    )
    return day


def day_bounds(day: date) -> tuple[int, int]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return int(start.timestamp()), int((start + timedelta(days=1)).timestamp())
