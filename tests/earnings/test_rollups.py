"""The summary read from the rollups (15-minute buckets and all-time totals) equals the
exact aggregation over the entries, for any time zone, clock, currency and project
filter; the rollups stay right under concurrent writers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.earnings.models import EarningSource, EarningsRollup, EarningsTotal
from payments_api.earnings.repository import (
    EarningsRepository,
    SummaryQuery,
    SummaryRow,
    bucket_ceil,
    bucket_floor,
    plan_window,
)
from payments_api.earnings.service import (
    EarningsService,
    NewEarning,
    local_midnight,
    summary_windows,
)
from tests.factories import create_user

MICRO = timedelta(microseconds=1)
ZONES = [
    "UTC",
    "Asia/Kolkata",  # +5:30
    "Asia/Kathmandu",  # +5:45
    "America/St_Johns",  # -3:30 / -2:30 (DST)
    "Europe/Berlin",  # DST
    "America/New_York",  # DST
    "Australia/Lord_Howe",  # +10:30 / +11 (a 30-minute DST shift)
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Santiago",  # DST change at local midnight
    "Africa/Monrovia",  # -0:44:30 until 1972
]
ANCHORS = [
    datetime(2026, 6, 15, 12, tzinfo=UTC),
    datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # Europe to summer time
    datetime(2026, 11, 1, 5, tzinfo=UTC),  # US back to standard time
    datetime(2026, 4, 5, 3, tzinfo=UTC),  # Santiago, Lord Howe
    # Local mean time: offsets in seconds, so local midnights are not bucket boundaries
    # (Berlin +0:53:28 in 1890, Kolkata +5:53:28, Monrovia -0:44:30 in 1960).
    datetime(1890, 6, 15, 12, tzinfo=UTC),
    datetime(1960, 6, 15, 12, tzinfo=UTC),
]
PROJECTS = [None, "a", "b", ""]
CURRENCIES = ["usd", "jpy", "eur"]

Entry = tuple[timedelta, int, str, str | None]
"""(earned_at - now, amount, currency, project_id)"""

entries = st.lists(
    st.tuples(
        st.one_of(
            st.timedeltas(min_value=-timedelta(days=40), max_value=timedelta(days=2)),
            # near the window boundaries (whole days back, give or take a little)
            st.builds(
                lambda days, micros: timedelta(days=days, microseconds=micros),
                st.sampled_from([-30, -29, -7, -6, -1, 0, 1]),
                st.integers(-24 * 3600 * 1_000_000, 24 * 3600 * 1_000_000),
            ),
        ),
        st.integers(0, 10**12),
        st.sampled_from(CURRENCIES),
        st.sampled_from(PROJECTS),
    ),
    max_size=40,
)


async def _record(service: EarningsService, payee: str, at: datetime, entry: Entry) -> None:
    _, amount, currency, project_id = entry
    await service.record(
        NewEarning(
            payee_id=payee,
            source=EarningSource.payment,
            source_id=f"pi_{uuid.uuid4().hex}",
            amount=amount,
            currency=currency,
            project_id=project_id,
            earned_at=at,
        )
    )


async def _both(
    repository: EarningsRepository,
    payee: str,
    now: datetime,
    zone: ZoneInfo,
    currency: str | None,
    project_id: str | None,
) -> tuple[list[SummaryRow], list[SummaryRow]]:
    query = SummaryQuery(payee, summary_windows(now, zone), currency, project_id)
    from_rollups = await repository.summary(query)
    exact = await repository.exact_summary(query)
    return from_rollups, exact


async def rollups_match_entries(session: AsyncSession) -> list[str]:
    """Every bucket and total equals the aggregation of its entries (empty = ok)."""
    broken = []
    # Written independently of the trigger: the Unix time floored to 15 minutes.
    bucket = "to_timestamp(floor(extract(epoch FROM earned_at) / 900) * 900), "
    for name, key, group in (
        ("earnings_rollups", "bucket_start, ", "1, 2, 3, 4"),
        ("earnings_totals", "", "1, 2, 3"),
    ):
        expr = bucket if key else ""
        differing = await session.scalar(
            text(
                f"""SELECT count(*) FROM (
                    SELECT payee_id, {key}currency, project_id, amount, entries FROM {name}
                    EXCEPT ALL
                    SELECT payee_id, {expr}currency, coalesce(project_id, ''),
                           sum(amount), count(*)
                    FROM earnings GROUP BY {group}) x"""
            )
        )
        missing = await session.scalar(
            text(
                f"""SELECT count(*) - (SELECT count(*) FROM {name}) FROM (
                    SELECT DISTINCT payee_id, {expr}currency, coalesce(project_id, '')
                    FROM earnings) x"""
            )
        )
        if differing or missing:
            broken.append(f"{name}: {differing} differ, {missing} missing")
    return broken


class TestBuckets:
    def test_floor_and_ceil(self) -> None:
        at = datetime(2026, 6, 15, 10, 7, 30, 5, tzinfo=UTC)
        assert bucket_floor(at) == datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
        assert bucket_ceil(at) == datetime(2026, 6, 15, 10, 15, tzinfo=UTC)
        boundary = datetime(2026, 6, 15, 10, 15, tzinfo=UTC)
        assert bucket_floor(boundary) == bucket_ceil(boundary) == boundary
        assert bucket_floor(boundary - MICRO) == datetime(2026, 6, 15, 10, 0, tzinfo=UTC)

    def test_aligned_windows_read_buckets_only(self) -> None:
        windows = summary_windows(datetime(2026, 6, 15, 12, tzinfo=UTC), ZoneInfo("Asia/Kathmandu"))
        plan = plan_window(windows.last_30_days, windows.until)
        assert plan.edges == ()
        assert plan.buckets == (windows.last_30_days, windows.until)

    def test_unaligned_windows_read_entries_at_the_edges(self) -> None:
        # 1890 in Berlin: local mean time, UTC+0:53:28
        windows = summary_windows(datetime(1890, 6, 15, 12, tzinfo=UTC), ZoneInfo("Europe/Berlin"))
        assert windows.today == datetime(1890, 6, 14, 23, 6, 32, tzinfo=UTC)
        plan = plan_window(windows.today, windows.until)
        assert plan.buckets == (
            datetime(1890, 6, 14, 23, 15, tzinfo=UTC),
            datetime(1890, 6, 15, 23, 0, tzinfo=UTC),
        )
        assert plan.edges == (
            (windows.today, datetime(1890, 6, 14, 23, 15, tzinfo=UTC)),
            (datetime(1890, 6, 15, 23, 0, tzinfo=UTC), windows.until),
        )

    def test_a_window_within_one_bucket_is_all_edge(self) -> None:
        start = datetime(2026, 6, 15, 10, 1, tzinfo=UTC)
        plan = plan_window(start, start + timedelta(minutes=20))
        assert plan.buckets is None
        assert plan.edges == ((start, start + timedelta(minutes=20)),)

    def test_every_zone_has_bucket_aligned_midnights_today(self) -> None:
        """The assumption the rollups are built on: in every IANA zone, every local
        midnight of 2026 is on a 15-minute UTC boundary (otherwise the summary still is
        exact, it reads the entries at the edges)."""
        off = []
        for name in sorted(available_timezones()):
            zone = ZoneInfo(name)
            day = date(2026, 1, 1)
            while day.year == 2026:
                midnight = local_midnight(day, zone)
                if bucket_floor(midnight) != midnight:
                    off.append((name, day))
                    break
                day += timedelta(days=1)
        assert off == []


class TestSummaryEqualsExactAggregation:
    @settings(
        max_examples=50,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        batch=entries,
        anchor=st.sampled_from(ANCHORS),
        shift=st.timedeltas(min_value=-timedelta(days=3), max_value=timedelta(days=3)),
        zone=st.sampled_from(ZONES),
        currency=st.sampled_from([None, *CURRENCIES]),
        project_id=st.sampled_from(PROJECTS),
    )
    @example(
        batch=[(timedelta(0), 5, "usd", None), (-MICRO, 7, "usd", "a")],
        anchor=ANCHORS[4],
        shift=timedelta(0),
        zone="Europe/Berlin",
        currency=None,
        project_id=None,
    )
    @example(
        batch=[(timedelta(hours=-h, minutes=-m), h * 100 + m, "usd", "a")
               for h in range(0, 48, 5) for m in (0, 7, 15, 44, 45)],
        anchor=ANCHORS[5],
        shift=timedelta(0),
        zone="Africa/Monrovia",
        currency="usd",
        project_id="a",
    )  # fmt: skip
    @example(
        batch=[(timedelta(0), 1, "usd", ""), (timedelta(0), 2, "usd", None)],
        anchor=ANCHORS[0],
        shift=timedelta(0),
        zone="Asia/Kolkata",
        currency=None,
        project_id="",
    )
    async def test_rollup_summary_equals_exact(
        self,
        session: AsyncSession,
        batch: list[Entry],
        anchor: datetime,
        shift: timedelta,
        zone: str,
        currency: str | None,
        project_id: str | None,
    ) -> None:
        example_txn = await session.begin_nested()
        try:
            payee = await create_user(session, roles=["payee"])
            now = anchor + shift
            service = EarningsService(session, now=lambda: now)
            tz = ZoneInfo(zone)
            # Entries at the window boundaries themselves, and just before them.
            windows = summary_windows(now, tz)
            edges = [windows.today, windows.last_7_days, windows.last_30_days, windows.until]
            for at in edges:
                await _record(service, payee.id, at, (timedelta(0), 3, "usd", "a"))
                await _record(service, payee.id, at - MICRO, (timedelta(0), 11, "usd", None))
            for entry in batch:
                await _record(service, payee.id, now + entry[0], entry)
            repository = EarningsRepository(session)
            from_rollups, exact = await _both(repository, payee.id, now, tz, currency, project_id)
            assert from_rollups == exact
            # and through the service, as the route answers
            page = await service.page(
                payee.id, limit=1, currency=currency, project_id=project_id, tz=zone
            )
            assert [
                (s.currency, s.today, s.last_7_days, s.last_30_days, s.all_time)
                for s in page.summary
            ] == [(r.currency, r.today, r.last_7_days, r.last_30_days, r.all_time) for r in exact]
            assert await rollups_match_entries(session) == []
        finally:
            await example_txn.rollback()


class TestBucketsInTheDatabase:
    @pytest.mark.parametrize(
        "earned_at",
        [
            datetime(1890, 6, 14, 23, 0, tzinfo=UTC),  # on a boundary, long before 2000
            datetime(1999, 12, 31, 23, 45, tzinfo=UTC),
            datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(2026, 6, 15, 10, 15, tzinfo=UTC),
        ],
    )
    async def test_the_trigger_buckets_an_entry_where_bucket_floor_does(
        self, session: AsyncSession, earned_at: datetime
    ) -> None:
        payee = await create_user(session, roles=["payee"])
        await _record(EarningsService(session), payee.id, earned_at, (timedelta(0), 5, "usd", "a"))
        buckets = (
            await session.scalars(
                select(EarningsRollup.bucket_start).where(EarningsRollup.payee_id == payee.id)
            )
        ).all()
        assert buckets == [bucket_floor(earned_at)]


class TestWrites:
    async def test_a_duplicate_source_changes_nothing(self, session: AsyncSession) -> None:
        payee = await create_user(session, roles=["payee"])
        at = datetime(2026, 6, 15, 10, 7, tzinfo=UTC)
        new = NewEarning(
            payee_id=payee.id,
            source=EarningSource.escrow,
            source_id=f"esc_dup_{uuid.uuid4().hex[:8]}",
            amount=500,
            currency="usd",
            project_id="p",
            earned_at=at,
        )
        service = EarningsService(session)
        first = await service.record(new)
        assert first is not None
        assert first.amount == 500
        assert first.earned_at == at
        assert await service.record(new) is None
        assert await service.record(new) is None
        rollups = (
            await session.scalars(select(EarningsRollup).where(EarningsRollup.payee_id == payee.id))
        ).all()
        assert [(r.bucket_start, r.project_id, r.amount, r.entries) for r in rollups] == [
            (datetime(2026, 6, 15, 10, 0, tzinfo=UTC), "p", 500, 1)
        ]
        total = await session.get(EarningsTotal, (payee.id, "usd", "p"))
        assert total is not None
        assert (total.amount, total.entries) == (500, 1)

    async def test_corrections_of_entries_are_rolled_up_too(self, session: AsyncSession) -> None:
        """The trigger keeps the rollups right whatever writes ``earnings``: a manual
        correction (UPDATE), a removal (DELETE) and TRUNCATE."""
        payee = await create_user(session, roles=["payee"])
        other = await create_user(session, roles=["payee"])
        at = datetime(2026, 6, 15, 10, 7, tzinfo=UTC)
        service = EarningsService(session)
        for k, (who, project) in enumerate([(payee, "p"), (payee, "p"), (other, None)]):
            await _record(
                service, who.id, at + timedelta(minutes=k), (timedelta(0), 10, "usd", project)
            )
        assert await rollups_match_entries(session) == []
        savepoint = await session.begin_nested()
        for change in [
            "UPDATE earnings SET amount = amount + 5 WHERE payee_id = :p",
            "UPDATE earnings SET earned_at = earned_at + interval '1 hour' WHERE payee_id = :p"
            " AND earned_at = (SELECT min(earned_at) FROM earnings WHERE payee_id = :p)",
            "UPDATE earnings SET project_id = NULL, currency = 'eur' WHERE payee_id = :p",
            "UPDATE earnings SET payee_id = :o WHERE payee_id = :p"
            " AND earned_at = (SELECT max(earned_at) FROM earnings WHERE payee_id = :p)",
            "UPDATE earnings SET reference = 'x' WHERE payee_id = :o",
            "DELETE FROM earnings WHERE payee_id = :p",
        ]:
            await session.execute(text(change), {"p": payee.id, "o": other.id})
            assert await rollups_match_entries(session) == [], change
        assert (
            await session.scalar(
                select(func.count())
                .select_from(EarningsTotal)
                .where(EarningsTotal.payee_id == payee.id)
            )
            == 0
        )
        await session.execute(text("TRUNCATE earnings"))
        assert await session.scalar(select(func.count()).select_from(EarningsRollup)) == 0
        assert await session.scalar(select(func.count()).select_from(EarningsTotal)) == 0
        await savepoint.rollback()


class TestConcurrentWriters:
    async def test_concurrent_records_for_one_payee_add_up(self, engine: AsyncEngine) -> None:
        """Writers on separate connections, each committing its own entry (some the same
        source twice), for one payee: every bucket and total is the sum of its entries."""
        committed = async_sessionmaker(engine, expire_on_commit=False)
        tag = uuid.uuid4().hex[:10]
        async with committed.begin() as session:
            payee = (await create_user(session, id=f"roll-payee-{tag}", roles=["payee"])).id
        base = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
        writers = 24

        start = asyncio.Barrier(writers)

        async def write(k: int) -> bool:
            n = k - (k % 4 == 3)
            await start.wait()  # all at once: they contend for the hot bucket's rows
            async with committed.begin() as session:
                # one hot bucket for all, plus a few others; every 4th writer repeats the
                # source of the one before it
                earning = await EarningsService(session).record(
                    NewEarning(
                        payee_id=payee,
                        source=EarningSource.payment,
                        source_id=f"pi_{tag}_{n}",
                        amount=100 + n,
                        currency="usd",
                        project_id="p" if n % 2 else None,
                        earned_at=base + timedelta(minutes=n % 3 * 7),
                    )
                )
                return earning is not None

        inserted = await asyncio.gather(*(write(k) for k in range(writers)))
        assert sum(inserted) == writers - writers // 4
        async with committed() as session:
            assert await rollups_match_entries(session) == []
            totals = (
                await session.scalars(select(EarningsTotal).where(EarningsTotal.payee_id == payee))
            ).all()
            expected = sum(100 + k for k in range(writers) if k % 4 != 3)
            assert sum(t.amount for t in totals) == expected
            assert sum(t.entries for t in totals) == writers - writers // 4
            from_rollups, exact = await _both(
                EarningsRepository(session), payee, base, ZoneInfo("Asia/Kathmandu"), None, None
            )
            assert from_rollups == exact
            assert exact[0].today == expected


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns"])
async def test_half_and_quarter_hour_zones_at_their_midnight(
    session: AsyncSession, zone: str
) -> None:
    payee = await create_user(session, roles=["payee"])
    tz = ZoneInfo(zone)
    midnight = local_midnight(date(2026, 6, 15), tz)
    service = EarningsService(session, now=lambda: midnight)
    for at, amount in [(midnight, 1), (midnight - MICRO, 10), (midnight + MICRO, 100)]:
        await _record(service, payee.id, at, (timedelta(0), amount, "usd", None))
    [usd] = (await service.page(payee.id, limit=1, tz=zone)).summary
    assert (usd.today, usd.last_7_days, usd.all_time) == (101, 111, 111)
