"""What payees earned: one entry per settled job (or direct payment) and its summary.

Entries hold only the payee's take. The summary windows are calendar days of a time
zone (``tz``, default ``PAYMENTS_EARNINGS_DEFAULT_TIMEZONE``): "today" starts at local
midnight, "last 7 days" at local midnight six days before today, "last 30 days" at
local midnight 29 days before today; all three end at the next local midnight. The
sums are read from rollups written with each entry (15-minute UTC buckets and all-time
totals, see ``EarningsRepository``), exact for any zone: docs/escrow.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, TypedDict, Unpack
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.auth import Principal
from payments_api.db import Rider, driver_connection, read_connection
from payments_api.earnings.errors import InvalidDateRange, InvalidTimezone
from payments_api.earnings.models import Earning, EarningSource
from payments_api.earnings.payout_status import attribute
from payments_api.earnings.repository import (
    EarningRow,
    EarningsRepository,
    PageQuery,
    Snapshot,
    SummaryQuery,
    SummaryRow,
    Windows,
    attribution_inputs,
    attribution_shortcut,
    read_snapshot,
)
from payments_api.earnings.schemas import (
    EarningRead,
    EarningsList,
    EarningsPayoutStatus,
    EarningsSummary,
    PayoutStatusTotals,
)
from payments_api.kit.clock import utcnow
from payments_api.kit.pagination import InvalidCursor, parse_cursor, parse_public_id, public_id
from payments_api.kit.reads import read_of
from payments_api.money import normalize_currency
from payments_api.users.repository import UserRepository, matches_principal

Clock = Callable[[], datetime]
EARNING_PREFIX = "ern"
ESCROW_PREFIX = "esc"


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def resolve_timezone(name: str) -> ZoneInfo:
    """An IANA zone by name; anything else (paths, unknown keys) is InvalidTimezone."""
    if name not in _known_zones():
        raise InvalidTimezone(
            f"{name!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin).", tz=name
        )
    return ZoneInfo(name)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant where ``day`` starts in ``zone`` (DST-aware; a day whose midnight
    falls in a DST gap starts at the transition)."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def summary_windows(now: datetime, zone: ZoneInfo) -> Windows:
    today = now.astimezone(zone).date()
    return Windows(
        today=local_midnight(today, zone),
        last_7_days=local_midnight(today - timedelta(days=6), zone),
        last_30_days=local_midnight(today - timedelta(days=29), zone),
        until=local_midnight(today + timedelta(days=1), zone),
    )


@dataclass(frozen=True, slots=True)
class NewEarning:
    """An amount a payee earned, as the domain that credited them reports it."""

    payee_id: str
    source: EarningSource
    source_id: str
    """Public id of the source (``esc_12``, ``pi_...``): the entry is written once per source."""
    amount: int
    """The payee's take only, minor units."""
    currency: str
    reference: str | None = None
    project_id: str | None = None
    session_id: str | None = None
    escrow_id: int | None = None
    ledger_transaction_id: int | None = None
    earned_at: datetime | None = None
    """Defaults to the service clock."""


class PageFilters(TypedDict, total=False):
    """What narrows a page of earnings; ``date_from``/``date_to`` are inclusive calendar
    days in ``tz`` (the summary windows' zone too)."""

    starting_after: str | None
    currency: str | None
    project_id: str | None
    date_from: date | None
    date_to: date | None
    tz: str | None


class EarningsService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        now: Clock = utcnow,
        default_timezone: str = "UTC",
    ) -> None:
        self.session = session
        self.repository = EarningsRepository(session)
        self.now = now
        self.default_timezone = default_timezone

    def record_with_posting(self, new: NewEarning) -> Rider:
        """:meth:`record` as a rider of the ledger posting that credits the payee
        (``NewTransaction.riders``): written in the posting's statement, with its ledger
        transaction's id (``new.ledger_transaction_id`` is not used)."""
        return EarningsRepository.insert_riding_posting(self._values(new))

    async def record(self, new: NewEarning) -> Earning | None:
        """Write one earnings entry in the caller's transaction (the one that credited
        the payee). Recording the same source again writes nothing and returns None."""
        return await self.repository.insert(
            {**self._values(new), "ledger_transaction_id": new.ledger_transaction_id}
        )

    def _values(self, new: NewEarning) -> dict[str, Any]:
        return {
            "payee_id": new.payee_id,
            "source_type": new.source.value,
            "source_id": new.source_id,
            "escrow_id": new.escrow_id,
            "amount": new.amount,
            "currency": normalize_currency(new.currency),
            "reference": new.reference,
            "project_id": new.project_id,
            "session_id": new.session_id,
            "earned_at": new.earned_at or self.now(),
        }

    async def page(
        self, payee_id: str, *, limit: int, **filters: Unpack[PageFilters]
    ) -> EarningsList:
        """:meth:`EarningsReader.page` on this session's connection and transaction."""
        return await self._reader().page(payee_id, limit=limit, **filters)

    async def page_for(
        self, principal: Principal, *, limit: int, **filters: Unpack[PageFilters]
    ) -> EarningsList:
        """:meth:`EarningsReader.page_for` on this session's connection and transaction."""
        return await self._reader().page_for(principal, limit=limit, **filters)

    def _reader(self) -> EarningsReader:
        # Built when a page is asked for: the settlement steps construct this service
        # for every posting and only record.
        return EarningsReader(
            lambda: _session_driver(self.session),
            UserRepository(self.session).upsert_from_principal,
            now=self.now,
            default_timezone=self.default_timezone,
        )


@asynccontextmanager
async def _session_driver(session: AsyncSession) -> AsyncIterator[Any]:
    yield await driver_connection(session, begin=False)


class EarningsReader:
    """Pages of a payee's earnings with their summary, read on an asyncpg connection
    from ``connect`` (each read one statement, its own consistent snapshot). The list
    route's reader (:meth:`pooled`) takes a pooled connection with no ORM session, as
    the balance read does: opening and closing a session was a share of the page's CPU.
    ``provision`` writes the caller's user row when the read finds it missing or stale.
    """

    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[Any]],
        provision: Callable[[Principal], Awaitable[object]],
        *,
        now: Clock = utcnow,
        default_timezone: str = "UTC",
    ) -> None:
        self.connect = connect
        self.provision = provision
        self.now = now
        self.default_timezone = default_timezone

    @classmethod
    def pooled(
        cls,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        now: Clock = utcnow,
        default_timezone: str = "UTC",
    ) -> EarningsReader:
        """Reads on the engine pool's connections; a user is provisioned in a
        transaction of its own, committed at once (as ``BalanceReader`` does)."""

        async def provision(principal: Principal) -> None:
            async with sessionmaker.begin() as session:
                await UserRepository(session).upsert_from_principal(principal)

        return cls(
            lambda: read_connection(sessionmaker),
            provision,
            now=now,
            default_timezone=default_timezone,
        )

    async def page(
        self, payee_id: str, *, limit: int, **filters: Unpack[PageFilters]
    ) -> EarningsList:
        """A page of the payee's entries, newest first, and the summary per currency."""
        async with self.connect() as driver:
            listing, _ = await self._page(driver, payee_id, limit, filters)
        return listing

    async def page_for(
        self, principal: Principal, *, limit: int, **filters: Unpack[PageFilters]
    ) -> EarningsList:
        """:meth:`page` of the caller, read in the same statement as their user row.

        The user row stands in for ``CurrentUser``: when it is missing (first sight) or
        the token's roles or email changed, the user is provisioned as on every other
        route, and the read runs again.
        """
        async with self.connect() as driver:
            listing, snapshot = await self._page(driver, principal.sub, limit, filters)
        if snapshot.roles is None or not matches_principal(
            snapshot.roles, snapshot.email, principal
        ):
            await self.provision(principal)
            async with self.connect() as driver:
                listing, _ = await self._page(driver, principal.sub, limit, filters)
        return listing

    async def _page(
        self, driver: Any, payee_id: str, limit: int, filters: PageFilters
    ) -> tuple[EarningsList, Snapshot]:
        starting_after, project_id = filters.get("starting_after"), filters.get("project_id")
        date_from, date_to = filters.get("date_from"), filters.get("date_to")
        currency, tz = filters.get("currency"), filters.get("tz")
        zone_name = tz or self.default_timezone
        zone = resolve_timezone(zone_name)
        if date_from is not None and date_to is not None and date_from > date_to:
            raise InvalidDateRange("`date_from` must not be after `date_to`.")
        currency = normalize_currency(currency) if currency else None
        now = self.now()
        snapshot = await read_snapshot(
            driver,
            SummaryQuery(payee_id, summary_windows(now, zone), currency, project_id),
            PageQuery(
                limit=limit + 1,
                after_id=parse_cursor(EARNING_PREFIX, starting_after),
                currency=currency,
                project_id=project_id,
                earned_from=local_midnight(date_from, zone) if date_from else None,
                earned_before=(
                    local_midnight(date_to + timedelta(days=1), zone) if date_to else None
                ),
            ),
        )
        if not snapshot.cursor_found:
            # Another payee's entry or none: answered like a malformed cursor.
            raise InvalidCursor("`starting_after` is not one of your earnings entries.")
        rows = snapshot.rows
        statuses, totals = await self._payout_statuses(
            driver, payee_id, currency, project_id, rows, snapshot.summary
        )
        listing = EarningsList(
            data=[
                _read(row, zone, statuses.get(row.id, EarningsPayoutStatus.available))
                for row in rows[:limit]
            ],
            has_more=len(rows) > limit,
            summary=[
                read_of(
                    EarningsSummary,
                    s,
                    by_payout_status=PayoutStatusTotals(
                        **{
                            status.value: units
                            for status, units in totals.get(s.currency, {}).items()
                        }
                        or dict.fromkeys([status.value for status in EarningsPayoutStatus], 0)
                    ),
                )
                for s in snapshot.summary
            ],
            timezone=zone_name,
            summary_as_of=now.astimezone(zone),
        )
        return listing, snapshot

    async def _payout_statuses(
        self,
        driver: Any,
        payee_id: str,
        currency: str | None,
        project_id: str | None,
        rows: list[EarningRow],
        summary: list[SummaryRow],
    ) -> tuple[dict[int, EarningsPayoutStatus], dict[str, dict[EarningsPayoutStatus, int]]]:
        """Each row's payout status and the totals per status (``payout_status``).

        While none of the payee's money moved (no withdrawal, bank payout or refund of a
        direct payment) the answer needs no history: escrow takes are ``available``,
        direct payments ``in_transit``. Otherwise the payee's entries are attributed
        first in, first out, a walk through their history (see docs/escrow.md)."""
        if not rows and not summary:
            return {}, {}
        project = parse_public_id("prj", project_id) if project_id else None
        flows, direct = await attribution_shortcut(driver, payee_id, currency, project)
        moved = any(f.transferred or f.withdrawing or f.paid for f in flows.values())
        if not moved and not any(reversed_ for _net, reversed_ in direct.values()):
            statuses = {
                row.id: EarningsPayoutStatus.available
                # escrow takes and direct payments from a wallet are in the wallet
                if row.source_type == EarningSource.escrow or row.source_id.startswith("ord_")
                else EarningsPayoutStatus.in_transit
                for row in rows
            }
            totals: dict[str, dict[EarningsPayoutStatus, int]] = {}
            for s in summary:
                in_transit = direct.get(s.currency, (0, 0))[0]
                parts = dict.fromkeys(EarningsPayoutStatus, 0)
                parts[EarningsPayoutStatus.in_transit] = in_transit
                parts[EarningsPayoutStatus.available] = s.all_time - in_transit
                totals[s.currency] = parts
            return statuses, totals
        entries, flows = await attribution_inputs(driver, payee_id, currency)
        attribution = attribute(entries, flows)
        in_scope = [e for e in entries if project_id is None or e.project_id == project_id]
        return attribution.status, attribution.totals(in_scope)


def _read(row: EarningRow, zone: ZoneInfo, status: EarningsPayoutStatus) -> EarningRead:
    return read_of(
        EarningRead,
        row,
        id=public_id(EARNING_PREFIX, row.id),
        source=EarningSource(row.source_type),
        escrow_id=public_id(ESCROW_PREFIX, row.escrow_id) if row.escrow_id else None,
        payment_id=row.source_id if row.source_type == EarningSource.payment else None,
        earned_at=row.earned_at.astimezone(zone),
        payout_status=status,
    )
