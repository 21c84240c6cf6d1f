"""GET /api/v1/me/earnings through HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.earnings.models import EarningSource
from payments_api.earnings.router import get_clock
from payments_api.earnings.service import EarningsService, NewEarning
from payments_api.users.models import User
from tests.escrow.helpers import ESCROWS, headers, offer, own_project, parties
from tests.factories import create_user, fund
from tests.helpers import auth

EARNINGS = "/api/v1/me/earnings"
PAYEE = ["payee"]
ENTRY_FIELDS = {
    "object",
    "id",
    "source",
    "escrow_id",
    "payment_id",
    "reference",
    "project_id",
    "session_id",
    "amount",
    "currency",
    "earned_at",
    "payout_status",
}
FORBIDDEN_WORDS = ("gross", "fee", "price", "hold", "platform", "service")


class Frozen:
    """A clock tests can set."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Frozen:
    return Frozen(datetime(2026, 6, 15, 12, tzinfo=UTC))


@pytest.fixture
async def frozen_client(
    app_factory: Callable[..., FastAPI], clock: Frozen
) -> AsyncIterator[httpx.AsyncClient]:
    app = app_factory()
    app.dependency_overrides[get_clock] = lambda: clock
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _earn(session: AsyncSession, payee: str, at: datetime, amount: int, **kw: Any) -> None:
    await EarningsService(session).record(
        NewEarning(
            payee_id=payee,
            source=EarningSource.payment,
            source_id=f"pi_{payee}_{at.timestamp()}_{amount}",
            amount=amount,
            currency=kw.pop("currency", "usd"),
            earned_at=at,
            **kw,
        )
    )


class TestEarningsRouter:
    async def test_entries_show_only_the_payees_take(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        customer, payee = await parties(session, "take")
        await fund(session, customer.id, 10_500)
        shop = await own_project(session, payee.id)
        created = await client.post(
            ESCROWS,
            json=offer(payee.id, 10_000, reference="job-take", project_id=shop),
            headers=headers(customer.id, ["customer"]),
        )
        escrow_id = created.json()["id"]
        for action, sub, roles in (
            ("accept", payee.id, PAYEE),
            ("complete", customer.id, ["customer"]),
        ):
            response = await client.post(
                f"{ESCROWS}/{escrow_id}/{action}", headers=headers(sub, roles)
            )
            assert response.status_code == 200

        response = await client.get(EARNINGS, headers=auth(payee.id, PAYEE))
        assert response.status_code == 200, response.text
        body = response.json()
        [entry] = body["data"]
        assert set(entry) == ENTRY_FIELDS
        assert entry["amount"] == 8_000
        assert entry["currency"] == "usd"
        assert entry["escrow_id"] == escrow_id
        assert entry["source"] == "escrow"
        assert entry["reference"] == "job-take"
        assert entry["project_id"] == shop
        assert entry["payout_status"] == "available"
        assert entry["id"].startswith("ern_")
        # nowhere in the document: no such field, and neither 10 000 (the price),
        # 10 500 (what the customer paid), 500 nor 2 000 (the fees)
        keys = _keys(body)
        assert not [k for k in keys if any(word in k for word in FORBIDDEN_WORDS)]
        assert _numbers(body).isdisjoint({10_000, 10_500, 500, 2_000})
        [summary] = body["summary"]
        assert summary["all_time"] == summary["today"] == 8_000
        # no money moved yet: the whole take is in the wallet
        assert summary["by_payout_status"] == {
            "available": 8_000,
            "withdrawing": 0,
            "in_transit": 0,
            "paid": 0,
            "reversed": 0,
        }

        as_customer = (await client.get(EARNINGS, headers=auth(customer.id, ["customer"]))).json()
        assert as_customer["data"] == []
        assert as_customer["summary"] == []

    async def test_summary_at_a_berlin_day_boundary_with_time_frozen(
        self, frozen_client: httpx.AsyncClient, session: AsyncSession, clock: Frozen
    ) -> None:
        payee = await create_user(session, roles=PAYEE)
        berlin_midnight = datetime(2026, 6, 14, 22, tzinfo=UTC)  # 2026-06-15 00:00 CEST
        await _earn(session, payee.id, berlin_midnight, 1)
        await _earn(session, payee.id, berlin_midnight - timedelta(microseconds=1), 10)
        who = auth(payee.id, PAYEE)

        clock.at = berlin_midnight - timedelta(microseconds=1)  # 23:59:59.999999 on the 14th
        before = (await frozen_client.get(f"{EARNINGS}?tz=Europe/Berlin", headers=who)).json()
        assert before["summary"][0]["today"] == 10
        clock.at = berlin_midnight  # the 15th has begun in Berlin
        after = (await frozen_client.get(f"{EARNINGS}?tz=Europe/Berlin", headers=who)).json()
        assert after["summary"][0]["today"] == 1
        assert after["summary"][0]["last_7_days"] == 11
        assert after["timezone"] == "Europe/Berlin"
        assert after["summary_as_of"] == "2026-06-15T00:00:00+02:00"
        assert after["data"][0]["earned_at"] == "2026-06-15T00:00:00+02:00"
        in_utc = (await frozen_client.get(EARNINGS, headers=who)).json()
        assert in_utc["timezone"] == "UTC"
        assert in_utc["summary"][0]["today"] == 11  # still the 14th in UTC

    async def test_pagination_newest_first_and_date_filters(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        payee = await create_user(session, roles=PAYEE)
        other = await create_user(session, roles=PAYEE)
        days = [datetime(2026, 6, d, 12, tzinfo=UTC) for d in (1, 2, 3, 4, 5)]
        # recorded out of time order: the order is by when it was earned
        for index in (2, 0, 4, 1, 3):
            await _earn(session, payee.id, days[index], 100 * (index + 1))
        await _earn(session, other.id, days[0], 9_999)
        who = auth(payee.id, PAYEE)
        first = (await client.get(f"{EARNINGS}?limit=2", headers=who)).json()
        assert [e["amount"] for e in first["data"]] == [500, 400]
        assert first["has_more"] is True
        cursor = first["data"][-1]["id"]
        rest = (await client.get(f"{EARNINGS}?limit=5&starting_after={cursor}", headers=who)).json()
        assert [e["amount"] for e in rest["data"]] == [300, 200, 100]
        assert rest["has_more"] is False
        ranged = (
            await client.get(f"{EARNINGS}?date_from=2026-06-02&date_to=2026-06-04", headers=who)
        ).json()
        assert [e["amount"] for e in ranged["data"]] == [400, 300, 200]
        # the summary ignores the date range
        assert ranged["summary"][0]["all_time"] == 1_500
        # 2026-06-05 12:00 UTC is 2026-06-06 in Pacific/Kiritimati (UTC+14)
        kiritimati = (
            await client.get(f"{EARNINGS}?date_from=2026-06-06&tz=Pacific/Kiritimati", headers=who)
        ).json()
        assert [e["amount"] for e in kiritimati["data"]] == [500]

    @pytest.mark.parametrize(
        ("query", "code"),
        [
            ("tz=Mars/Olympus", "invalid_timezone"),
            ("tz=../../etc/passwd", "invalid_timezone"),
            ("date_from=2026-06-05&date_to=2026-06-01", "invalid_date_range"),
            ("date_from=yesterday", "validation_error"),
            # Found by schemathesis: lax pydantic took Unix timestamps ("0" was 1970-01-01)
            # where the spec declares `format: date`.
            ("date_to=0", "validation_error"),
            ("date_from=86400", "validation_error"),
            ("date_from=2026-6-1", "validation_error"),
            ("date_from=%D9%A2%D9%A0%D9%A2%D9%A6-06-01", "validation_error"),
            ("starting_after=esc_1", "invalid_cursor"),
            ("currency=xyz", "validation_error"),
            ("limit=0", "validation_error"),
        ],
    )
    async def test_bad_queries_are_422(
        self, client: httpx.AsyncClient, query: str, code: str
    ) -> None:
        response = await client.get(f"{EARNINGS}?{query}", headers=auth("anyone", PAYEE))
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code

    async def test_someone_elses_cursor_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        payee = await create_user(session, roles=PAYEE)
        other = await create_user(session, roles=PAYEE)
        await _earn(session, other.id, datetime(2026, 6, 1, tzinfo=UTC), 5)
        theirs = (await client.get(EARNINGS, headers=auth(other.id, PAYEE))).json()["data"][0]
        response = await client.get(
            f"{EARNINGS}?starting_after={theirs['id']}", headers=auth(payee.id, PAYEE)
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_cursor"

    async def test_requires_auth(self, client: httpx.AsyncClient) -> None:
        assert (await client.get(EARNINGS)).status_code == 401

    async def test_first_sight_and_changed_roles_provision_the_user(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """The list reads the user row in its own statement: a caller never seen before
        is provisioned (and sees nothing), and a token with new roles updates the row,
        as CurrentUser does on every other route."""
        sub = f"first-sight-{uuid.uuid4().hex[:8]}"
        response = await client.get(EARNINGS, headers=auth(sub, PAYEE))
        assert response.status_code == 200, response.text
        assert (response.json()["data"], response.json()["summary"]) == ([], [])
        user = await session.get(User, sub)
        assert user is not None
        assert user.roles == PAYEE
        await _earn(session, sub, datetime(2026, 6, 15, 11, tzinfo=UTC), 42)
        again = await client.get(EARNINGS, headers=auth(sub, ["customer", "payee"]))
        assert again.status_code == 200
        assert again.json()["summary"][0]["all_time"] == 42
        await session.refresh(user)
        assert user.roles == ["customer", "payee"]


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_keys(v) for v in value))
    return set()


def _numbers(value: Any) -> set[int]:
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_numbers(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_numbers(v) for v in value)) if value else set()
    return set()
