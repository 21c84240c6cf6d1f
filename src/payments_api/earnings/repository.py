from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    DateTime,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from payments_api.earnings.models import (
    NO_PROJECT,
    ROLLUP_BUCKET_MINUTES,
    ROLLUP_BUCKET_ORIGIN,
    Earning,
    EarningsRollup,
    EarningsTotal,
)

BUCKET = timedelta(minutes=ROLLUP_BUCKET_MINUTES)
_ORIGIN = datetime.fromisoformat(ROLLUP_BUCKET_ORIGIN)


def bucket_floor(instant: datetime) -> datetime:
    """The start of the rollup bucket holding ``instant`` (what ``date_bin`` computes)."""
    return instant - (instant - _ORIGIN) % BUCKET


def bucket_ceil(instant: datetime) -> datetime:
    """The first bucket boundary at or after ``instant``."""
    floor = bucket_floor(instant)
    return floor if floor == instant else floor + BUCKET


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """How one summary window ``[start, until)`` is summed: whole rollup buckets in
    ``buckets`` (``[from, to)`` of ``bucket_start``; None when the window holds no whole
    bucket) plus the entries themselves in ``edges`` (the parts of the window that do not
    fill a bucket: empty whenever ``start`` and ``until`` are bucket boundaries)."""

    start: datetime
    until: datetime
    buckets: tuple[datetime, datetime] | None
    edges: tuple[tuple[datetime, datetime], ...]


def plan_window(start: datetime, until: datetime) -> WindowPlan:
    start, until = start.astimezone(UTC), until.astimezone(UTC)
    first, last = bucket_ceil(start), bucket_floor(until)
    if first >= last:
        return WindowPlan(start, until, None, ((start, until),) if start < until else ())
    edges = tuple((lo, hi) for lo, hi in ((start, first), (last, until)) if lo < hi)
    return WindowPlan(start, until, (first, last), edges)


@dataclass(frozen=True, slots=True)
class SummaryRow:
    currency: str
    today: int
    last_7_days: int
    last_30_days: int
    all_time: int


class EarningsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> Earning | None:
        """Insert an entry; None when the source was recorded already.

        The entry's rollup bucket and all-time total are updated by the ``earnings_rollup``
        trigger in this transaction (migration ``0011_earnings_rollups``); a duplicate
        inserts nothing, so it changes nothing.
        """
        stmt = (
            insert(Earning)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Earning.source_type, Earning.source_id])
            .returning(Earning)
        )
        earning: Earning | None = await self.session.scalar(stmt)
        return earning

    async def get(self, payee_id: str, earning_id: int) -> Earning | None:
        earning: Earning | None = await self.session.scalar(
            select(Earning).where(Earning.id == earning_id, Earning.payee_id == payee_id)
        )
        return earning

    @staticmethod
    def _filters(
        payee_id: str, currency: str | None, project_id: str | None
    ) -> list[ColumnElement[bool]]:
        conditions = [Earning.payee_id == payee_id]
        if currency is not None:
            conditions.append(Earning.currency == currency)
        if project_id is not None:
            conditions.append(Earning.project_id == project_id)
        return conditions

    async def page(
        self,
        payee_id: str,
        *,
        limit: int,
        after: Earning | None,
        currency: str | None,
        project_id: str | None,
        earned_from: datetime | None,
        earned_before: datetime | None,
    ) -> list[Earning]:
        """Newest first by (earned_at, id): keyset pagination that stays correct when
        entries are recorded out of time order."""
        conditions = self._filters(payee_id, currency, project_id)
        if earned_from is not None:
            conditions.append(Earning.earned_at >= earned_from)
        if earned_before is not None:
            conditions.append(Earning.earned_at < earned_before)
        if after is not None:
            conditions.append(
                tuple_(Earning.earned_at, Earning.id) < tuple_(after.earned_at, after.id)
            )
        stmt = (
            select(Earning)
            .where(and_(*conditions))
            .order_by(Earning.earned_at.desc(), Earning.id.desc())
            .limit(limit)
        )
        return list((await self.session.scalars(stmt)).all())

    async def summary(
        self,
        payee_id: str,
        *,
        today: datetime,
        last_7_days: datetime,
        last_30_days: datetime,
        until: datetime,
        currency: str | None,
        project_id: str | None,
    ) -> list[SummaryRow]:
        """Per-currency sums over the windows from the rollups: ``all_time`` from
        ``earnings_totals``, the windows from the 15-minute buckets they cover, and the
        entries themselves only for window edges that are not bucket boundaries (a zone
        offset that is not a multiple of 15 minutes, e.g. local mean time). One statement.

        The filter ``project_id=''`` cannot be told apart from "no project" in the
        rollups and is answered by :meth:`exact_summary`.
        """
        if project_id == NO_PROJECT:
            return await self.exact_summary(
                payee_id,
                today=today,
                last_7_days=last_7_days,
                last_30_days=last_30_days,
                until=until,
                currency=currency,
                project_id=project_id,
            )
        plans = [plan_window(start, until) for start in (today, last_7_days, last_30_days)]
        shape, params = _summary_params(payee_id, plans, currency, project_id)
        rows = await self.session.execute(_summary_statement(shape), params)
        return [SummaryRow(*row) for row in rows]

    async def exact_summary(
        self,
        payee_id: str,
        *,
        today: datetime,
        last_7_days: datetime,
        last_30_days: datetime,
        until: datetime,
        currency: str | None,
        project_id: str | None,
    ) -> list[SummaryRow]:
        """Per-currency sums over the windows, computed by PostgreSQL in one pass over
        the payee's entries (``sum(...) FILTER (WHERE ...)``): the definition the rollups
        must reproduce (the tests compare both), and the answer for ``project_id=''``."""

        def window(start: datetime) -> ColumnElement[int]:
            in_window = and_(Earning.earned_at >= start, Earning.earned_at < until)
            return cast(func.coalesce(func.sum(Earning.amount).filter(in_window), 0), BigInteger)

        stmt = (
            select(
                Earning.currency,
                window(today),
                window(last_7_days),
                window(last_30_days),
                cast(func.sum(Earning.amount), BigInteger),
            )
            .where(and_(*self._filters(payee_id, currency, project_id)))
            .group_by(Earning.currency)
            .order_by(Earning.currency)
        )
        return [SummaryRow(*row) for row in await self.session.execute(stmt)]


Shape = tuple[bool, bool, tuple[tuple[bool, int], ...]]
"""(currency filter?, project filter?, per window: whole buckets?, number of edges)."""


def _summary_params(
    payee_id: str, plans: Sequence[WindowPlan], currency: str | None, project_id: str | None
) -> tuple[Shape, dict[str, Any]]:
    params: dict[str, Any] = {"payee_id": payee_id, "currency": currency, "project_id": project_id}
    ranges = [plan.buckets for plan in plans if plan.buckets is not None]
    if ranges:
        params["bmin"] = min(lo for lo, _ in ranges)
        params["bmax"] = max(hi for _, hi in ranges)
    for i, plan in enumerate(plans):
        if plan.buckets is not None:
            params[f"b{i}_lo"], params[f"b{i}_hi"] = plan.buckets
        for j, (lo, hi) in enumerate(plan.edges):
            params[f"e{i}_{j}_lo"], params[f"e{i}_{j}_hi"] = lo, hi
    shape = (
        currency is not None,
        project_id is not None,
        tuple((plan.buckets is not None, len(plan.edges)) for plan in plans),
    )
    return shape, params


@lru_cache(maxsize=64)
def _summary_statement(shape: Shape) -> Select[str, int, int, int, int]:
    """``SELECT currency, sum(today), sum(7d), sum(30d), sum(all_time)`` over the union of
    the totals, the covered buckets and (rarely) the edge entries; built once per shape
    (building it costs more than running it), the instants are bound parameters."""
    has_currency, has_project, windows = shape
    zero = cast(literal_column("0"), BigInteger)

    def instant(name: str) -> BindParameter[datetime]:
        return bindparam(name, type_=DateTime(timezone=True))

    def within(column: InstrumentedAttribute[datetime], name: str) -> ColumnElement[bool]:
        """``name_lo <= column < name_hi``"""
        return and_(column >= instant(f"{name}_lo"), column < instant(f"{name}_hi"))

    def filters(
        payee: InstrumentedAttribute[str],
        currency: InstrumentedAttribute[str],
        project: InstrumentedAttribute[str] | InstrumentedAttribute[str | None],
    ) -> list[ColumnElement[bool]]:
        conditions = [payee == bindparam("payee_id", type_=String)]
        if has_currency:
            conditions.append(currency == bindparam("currency", type_=String))
        if has_project:
            conditions.append(project == bindparam("project_id", type_=String))
        return conditions

    def part(
        currency: ColumnElement[str] | InstrumentedAttribute[str],
        windows: Sequence[ColumnElement[int]],
        all_time: ColumnElement[int] | InstrumentedAttribute[int],
    ) -> Select[str, int, int, int, int]:
        today, last_7_days, last_30_days = windows
        return select(
            currency.label("currency"),
            today.label("today"),
            last_7_days.label("last_7_days"),
            last_30_days.label("last_30_days"),
            all_time.label("all_time"),
        )

    t, r = EarningsTotal, EarningsRollup
    parts: list[Select[str, int, int, int, int]] = [
        part(t.currency, [zero, zero, zero], t.amount).where(
            *filters(t.payee_id, t.currency, t.project_id)
        )
    ]
    if any(has_buckets for has_buckets, _ in windows):
        in_buckets = [
            case(
                (
                    and_(
                        r.bucket_start >= instant(f"b{i}_lo"), r.bucket_start < instant(f"b{i}_hi")
                    ),
                    r.amount,
                ),
                else_=zero,
            )
            if has_buckets
            else zero
            for i, (has_buckets, _) in enumerate(windows)
        ]
        parts.append(
            part(r.currency, in_buckets, zero).where(
                *filters(r.payee_id, r.currency, r.project_id),
                r.bucket_start >= instant("bmin"),
                r.bucket_start < instant("bmax"),
            )
        )
    in_edges: list[ColumnElement[bool] | None] = [
        or_(*(within(Earning.earned_at, f"e{i}_{j}") for j in range(edges))) if edges else None
        for i, (_, edges) in enumerate(windows)
    ]
    wanted = [condition for condition in in_edges if condition is not None]
    if wanted:
        parts.append(
            part(
                Earning.currency,
                [
                    zero if condition is None else case((condition, Earning.amount), else_=zero)
                    for condition in in_edges
                ],
                zero,
            ).where(*filters(Earning.payee_id, Earning.currency, Earning.project_id), or_(*wanted))
        )
    rows = union_all(*parts).subquery("parts")
    return (
        select(
            rows.c.currency,
            *(
                cast(func.sum(rows.c[name]), BigInteger)
                for name in ("today", "last_7_days", "last_30_days", "all_time")
            ),
        )
        .group_by(rows.c.currency)
        .order_by(rows.c.currency)
    )
