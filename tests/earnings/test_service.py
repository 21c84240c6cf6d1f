"""Earnings: windows on calendar days of a time zone, summed by PostgreSQL, with the
clock frozen at day boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.earnings.errors import InvalidTimezone
from payments_api.earnings.models import EarningSource
from payments_api.earnings.service import (
    EarningsService,
    NewEarning,
    resolve_timezone,
    summary_windows,
)
from payments_api.escrow.schemas import EscrowCreate
from payments_api.escrow.service import EscrowService
from payments_api.settings import Settings
from tests.escrow.helpers import own_project, parties
from tests.factories import create_user, fund

BERLIN = ZoneInfo("Europe/Berlin")
MICRO = timedelta(microseconds=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


async def _record(
    service: EarningsService, payee: str, at: datetime, amount: int, **kw: str
) -> None:
    await service.record(
        NewEarning(
            payee_id=payee,
            source=EarningSource.payment,
            source_id=f"pi_{payee}_{at.isoformat()}_{amount}",
            amount=amount,
            currency=kw.get("currency", "usd"),
            project_id=kw.get("project_id"),
            earned_at=at,
        )
    )


class TestSummaryWindows:
    def test_utc_calendar_days(self) -> None:
        windows = summary_windows(utc(2026, 6, 15, 0, 0, 0), ZoneInfo("UTC"))
        assert windows.today == utc(2026, 6, 15)
        assert windows.last_7_days == utc(2026, 6, 9)
        assert windows.last_30_days == utc(2026, 5, 17)
        assert windows.until == utc(2026, 6, 16)

    def test_berlin_midnight_is_utc_evening(self) -> None:
        # 2026-06-14 22:00 UTC is 2026-06-15 00:00 in Berlin (CEST, UTC+2): a new day
        windows = summary_windows(utc(2026, 6, 14, 22, 0, 0), BERLIN)
        assert windows.today == utc(2026, 6, 14, 22)
        just_before = summary_windows(utc(2026, 6, 14, 21, 59, 59, 999_999), BERLIN)
        assert just_before.today == utc(2026, 6, 13, 22)

    def test_windows_across_a_dst_change(self) -> None:
        # Berlin moves to summer time on 2026-03-29: the day before has 24 h, that day 23 h.
        windows = summary_windows(utc(2026, 3, 30, 10), BERLIN)
        assert windows.today == utc(2026, 3, 29, 22)  # 00:00 CEST
        assert windows.last_7_days == utc(2026, 3, 23, 23)  # 00:00 CET
        assert windows.last_30_days == utc(2026, 2, 28, 23)

    @pytest.mark.parametrize("name", ["Mars/Olympus", "utc", "../etc/passwd", "", "Europe"])
    def test_unknown_zones_are_refused(self, name: str) -> None:
        with pytest.raises(InvalidTimezone):
            resolve_timezone(name)


class TestSummary:
    async def test_day_boundaries_in_utc(self, session: AsyncSession) -> None:
        payee = await create_user(session, roles=["payee"])
        now = utc(2026, 6, 15, 0, 0, 0)  # exactly midnight
        service = EarningsService(session, now=lambda: now)
        for at, amount in [
            (now, 1),  # first instant of today
            (now - MICRO, 10),  # last instant of yesterday
            (utc(2026, 6, 9), 100),  # first instant of the 7-day window
            (utc(2026, 6, 9) - MICRO, 1_000),  # just outside it
            (utc(2026, 5, 17), 10_000),  # first instant of the 30-day window
            (utc(2026, 5, 17) - MICRO, 100_000),  # just outside it
        ]:
            await _record(service, payee.id, at, amount)
        page = await service.page(payee.id, limit=10)
        [usd] = page.summary
        assert (usd.today, usd.last_7_days, usd.last_30_days, usd.all_time) == (
            1,
            111,
            11_111,
            111_111,
        )
        assert page.timezone == "UTC"
        assert page.summary_as_of == now

    async def test_day_boundaries_in_berlin(self, session: AsyncSession) -> None:
        payee = await create_user(session, roles=["payee"])
        # 00:30 on 2026-03-30 in Berlin, the day after the switch to summer time
        now = utc(2026, 3, 29, 22, 30)
        service = EarningsService(session, now=lambda: now)
        berlin_midnight = utc(2026, 3, 29, 22)
        seven_days = utc(2026, 3, 23, 23)  # 2026-03-24 00:00 CET
        for at, amount in [
            (berlin_midnight, 1),
            (berlin_midnight - MICRO, 10),  # 23:59:59.999999 on the 29th in Berlin
            (seven_days, 100),
            (seven_days - MICRO, 1_000),
        ]:
            await _record(service, payee.id, at, amount)
        berlin = (await service.page(payee.id, limit=10, tz="Europe/Berlin")).summary[0]
        assert (berlin.today, berlin.last_7_days, berlin.all_time) == (1, 111, 1_111)
        # The same instants in UTC: it is still the 29th, so the 23:59 entry is "today".
        in_utc = (await service.page(payee.id, limit=10)).summary[0]
        assert (in_utc.today, in_utc.last_7_days) == (11, 1_111)

    async def test_default_zone_comes_from_configuration(self, session: AsyncSession) -> None:
        payee = await create_user(session, roles=["payee"])
        now = utc(2026, 6, 14, 22, 30)  # 00:30 on the 15th in Berlin
        service = EarningsService(session, now=lambda: now, default_timezone="Europe/Berlin")
        await _record(service, payee.id, utc(2026, 6, 14, 21, 59), 5)
        page = await service.page(payee.id, limit=10)
        assert page.timezone == "Europe/Berlin"
        assert page.summary[0].today == 0
        assert page.summary_as_of.utcoffset() == timedelta(hours=2)

    async def test_per_currency_and_project_filter(self, session: AsyncSession) -> None:
        payee = await create_user(session, roles=["payee"])
        now = utc(2026, 6, 15, 12)
        service = EarningsService(session, now=lambda: now)
        await _record(service, payee.id, now, 100, currency="usd", project_id="a")
        await _record(service, payee.id, now, 200, currency="usd", project_id="b")
        await _record(service, payee.id, now, 7, currency="jpy", project_id="a")
        page = await service.page(payee.id, limit=10)
        assert [(s.currency, s.all_time) for s in page.summary] == [("jpy", 7), ("usd", 300)]
        only_a = await service.page(payee.id, limit=10, project_id="a")
        assert [(s.currency, s.all_time) for s in only_a.summary] == [("jpy", 7), ("usd", 100)]
        only_usd = await service.page(payee.id, limit=10, currency="USD")
        assert [s.currency for s in only_usd.summary] == ["usd"]
        assert {e.currency for e in only_usd.data} == {"usd"}


class TestFromEscrows:
    async def test_completion_writes_the_take_once_at_the_service_clock(
        self, session: AsyncSession, settings: Settings
    ) -> None:
        customer, payee = await parties(session, "earn")
        await fund(session, customer.id, 10_500)
        completed_at = utc(2026, 6, 14, 22, 0)  # midnight in Berlin
        escrows = EscrowService(session, settings, now=lambda: completed_at)
        project = await own_project(session, payee.id)
        escrow, _ = await escrows.create(
            customer,
            EscrowCreate(
                payee_id=payee.id,
                amount=10_000,
                currency="usd",
                reference="job-77",
                project_id=project,
            ),
            idempotency_key=None,
        )
        await escrows.accept(escrow.id, payee)
        await escrows.complete(escrow.id, customer)
        await escrows.complete(escrow.id, customer)  # no-op: no second entry
        service = EarningsService(session, now=lambda: completed_at + timedelta(hours=1))
        page = await service.page(payee.id, limit=10, tz="Europe/Berlin")
        [entry] = page.data
        assert entry.amount == 8_000
        assert entry.escrow_id == f"esc_{escrow.id}"
        assert entry.reference == "job-77"
        assert entry.project_id == project
        assert entry.earned_at == completed_at
        assert entry.earned_at.utcoffset() == timedelta(hours=2)
        assert page.summary[0].today == 8_000
        customer_page = await service.page(customer.id, limit=10)
        assert customer_page.data == []
        assert customer_page.summary == []


class TestConfiguration:
    def test_default_zone_must_be_an_iana_name(self, settings: Settings) -> None:
        with pytest.raises(ValueError, match="unknown IANA time zone"):
            Settings(_env_file=None, earnings_default_timezone="Mars/Olympus")
        assert settings.earnings_default_timezone == "UTC"
