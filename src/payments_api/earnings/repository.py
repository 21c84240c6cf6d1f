"""Earnings entries and their summary.

The list route's read is one statement (:func:`read_snapshot`): the caller's user row,
the page of entries and the summary come back together on a pooled asyncpg connection
with no ORM session, outside a transaction (a statement is its own consistent
snapshot), as the other hot reads do (``payments_api.db.RawStatement``). Its SQL is
built once per shape of the request (which filters are set, how the windows fall on the
rollup buckets) and reused.
"""

# The SQL below is put together from constant fragments only (every value is a bound
# parameter), so string-built SQL is safe here.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, cast, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import RawStatement, Rider, driver_connection
from payments_api.earnings.models import (
    NO_PROJECT,
    ROLLUP_BUCKET_MINUTES,
    ROLLUP_BUCKET_ORIGIN,
    Earning,
)
from payments_api.earnings.payout_status import Entry, Flows

BUCKET = timedelta(minutes=ROLLUP_BUCKET_MINUTES)
_ORIGIN = datetime.fromisoformat(ROLLUP_BUCKET_ORIGIN)


def bucket_floor(instant: datetime) -> datetime:
    """The start of the rollup bucket holding ``instant`` (what the ``earnings_rollup``
    trigger computes)."""
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


@dataclass(frozen=True, slots=True)
class EarningRow:
    """One entry as the list shows it."""

    id: int
    source_type: str
    source_id: str
    escrow_id: int | None
    amount: int
    currency: str
    reference: str | None
    project_id: str | None
    session_id: str | None
    earned_at: datetime


@dataclass(frozen=True, slots=True)
class PageQuery:
    """Which entries: newest first by (earned_at, id), after the entry ``after_id``."""

    limit: int
    after_id: int | None = None
    currency: str | None = None
    project_id: str | None = None
    earned_from: datetime | None = None
    earned_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Windows:
    """Starts of the summary windows; all three end at ``until``."""

    today: datetime
    last_7_days: datetime
    last_30_days: datetime
    until: datetime
    """Start of tomorrow: the end of all three windows."""


@dataclass(frozen=True, slots=True)
class SummaryQuery:
    """Whose per-currency sums over which windows, filtered by ``currency`` and
    ``project_id`` (None: no filter)."""

    payee_id: str
    windows: Windows
    currency: str | None = None
    project_id: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    roles: list[str] | None
    """The user row's roles; None when the user row does not exist."""
    email: str | None
    cursor_found: bool
    """``after_id`` is one of the payee's entries (True when no cursor was given)."""
    rows: list[EarningRow]
    summary: list[SummaryRow]


_RIDER_COLUMNS = (
    "payee_id",
    "source_type",
    "source_id",
    "escrow_id",
    "amount",
    "currency",
    "reference",
    "project_id",
    "session_id",
    "earned_at",
)
# One earnings entry, as ``insert`` writes it, for the ledger's posting statement (its
# ``posted_transaction`` is the entry's ledger transaction: no row, no entry).
_INSERT_RIDING_POSTING = f"""
    earning AS (
        INSERT INTO earnings ({", ".join(_RIDER_COLUMNS)}, ledger_transaction_id)
        SELECT {", ".join(f":earning_{name}" for name in _RIDER_COLUMNS)},
               posted_transaction.id
        FROM posted_transaction
        ON CONFLICT (source_type, source_id) DO NOTHING
    )
"""


class EarningsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def insert_riding_posting(values: dict[str, Any]) -> Rider:
        """:meth:`insert` of ``values`` (without ``ledger_transaction_id``) as a rider of
        the ledger's posting statement (``NewTransaction.riders``), with the ledger
        transaction's id: the same row, trigger and no-op on a recorded source, no
        round trip of its own and nothing returned."""
        return Rider(_INSERT_RIDING_POSTING, {f"earning_{k}": v for k, v in values.items()})

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

    async def summary(self, query: SummaryQuery) -> list[SummaryRow]:
        """Per-currency sums over the windows from the rollups (the summary part of
        :func:`read_snapshot` alone): ``all_time`` from ``earnings_totals``, the windows from
        the 15-minute buckets they cover, and the entries themselves only for window
        edges that are not bucket boundaries (a zone offset that is not a multiple of 15
        minutes, e.g. local mean time).

        The filter ``project_id=''`` cannot be told apart from "no project" in the
        rollups and is summed from the entries.
        """
        shape, params = _summary_params(query)
        statement = _summary_statement(shape)
        driver = await driver_connection(self.session, begin=False)
        rows = await driver.fetch(
            statement.sql, *statement.args({"payee_id": query.payee_id, **params})
        )
        return [SummaryRow(*row) for row in rows]

    async def exact_summary(self, query: SummaryQuery) -> list[SummaryRow]:
        """Per-currency sums over the windows, computed by PostgreSQL in one pass over
        the payee's entries (``sum(...) FILTER (WHERE ...)``), through the ORM: the
        definition the rollups must reproduce (the tests compare both)."""

        def window(start: datetime) -> ColumnElement[int]:
            in_window = and_(Earning.earned_at >= start, Earning.earned_at < windows.until)
            return cast(func.coalesce(func.sum(Earning.amount).filter(in_window), 0), BigInteger)

        windows = query.windows
        conditions = [Earning.payee_id == query.payee_id]
        if query.currency is not None:
            conditions.append(Earning.currency == query.currency)
        if query.project_id is not None:
            conditions.append(Earning.project_id == query.project_id)
        stmt = (
            select(
                Earning.currency,
                window(windows.today),
                window(windows.last_7_days),
                window(windows.last_30_days),
                cast(func.sum(Earning.amount), BigInteger),
            )
            .where(*conditions)
            .group_by(Earning.currency)
            .order_by(Earning.currency)
        )
        return [SummaryRow(*row) for row in await self.session.execute(stmt)]


# --- SQL, built once per shape ------------------------------------------------------

PageShape = tuple[bool, bool, bool, bool, bool]
"""(cursor?, currency?, project?, from?, before?)"""
SummaryShape = tuple[bool, bool, tuple[tuple[bool, int], ...] | None]
"""(currency filter?, project filter?, per window: (whole buckets?, number of edges); None
for the exact sums over the entries)."""


def _filters(alias: str, shape: tuple[bool, bool]) -> str:
    has_currency, has_project = shape
    conditions = [f"{alias}.payee_id = :payee_id"]
    if has_currency:
        conditions.append(f"{alias}.currency = :currency")
    if has_project:
        conditions.append(f"{alias}.project_id = :project_id")
    return " AND ".join(conditions)


def _page_params(page: PageQuery) -> tuple[PageShape, dict[str, Any]]:
    shape = (
        page.after_id is not None,
        page.currency is not None,
        page.project_id is not None,
        page.earned_from is not None,
        page.earned_before is not None,
    )
    params = {
        "limit": page.limit,
        "after_id": page.after_id,
        "page_currency": page.currency,
        "page_project_id": page.project_id,
        "earned_from": page.earned_from,
        "earned_before": page.earned_before,
    }
    return shape, params


_ENTRY_COLUMNS = (
    "e.id, e.source_type, e.source_id, e.escrow_id, e.amount, e.currency, e.reference, "
    "e.project_id, e.session_id, e.earned_at"
)
_CURSOR = (
    "SELECT c.earned_at, c.id FROM earnings c WHERE c.id = :after_id AND c.payee_id = :payee_id"
)


def _page_sql(shape: PageShape) -> str:
    """Newest first by (earned_at, id): keyset pagination that stays correct when
    entries are recorded out of time order (index ``(payee_id, earned_at, id)``)."""
    has_after, has_currency, has_project, has_from, has_before = shape
    conditions = ["e.payee_id = :payee_id"]
    if has_currency:
        conditions.append("e.currency = :page_currency")
    if has_project:
        conditions.append("e.project_id = :page_project_id")
    if has_from:
        conditions.append("e.earned_at >= :earned_from")
    if has_before:
        conditions.append("e.earned_at < :earned_before")
    if has_after:
        conditions.append(f"(e.earned_at, e.id) < ({_CURSOR})")
    return (
        f"SELECT {_ENTRY_COLUMNS} FROM earnings e WHERE {' AND '.join(conditions)}"
        " ORDER BY e.earned_at DESC, e.id DESC LIMIT :limit"
    )


def _summary_params(query: SummaryQuery) -> tuple[SummaryShape, dict[str, Any]]:
    windows, currency, project_id = query.windows, query.currency, query.project_id
    params: dict[str, Any] = {"currency": currency, "project_id": project_id}
    filters = (currency is not None, project_id is not None)
    if project_id == NO_PROJECT:
        # Rolled up together with "no project": summed from the entries.
        params.update(
            today=windows.today,
            last_7_days=windows.last_7_days,
            last_30_days=windows.last_30_days,
            until=windows.until,
        )
        return (*filters, None), params
    starts = (windows.today, windows.last_7_days, windows.last_30_days)
    plans = [plan_window(start, windows.until) for start in starts]
    ranges = [plan.buckets for plan in plans if plan.buckets is not None]
    if ranges:
        params["bmin"] = min(lo for lo, _ in ranges)
        params["bmax"] = max(hi for _, hi in ranges)
    for i, plan in enumerate(plans):
        if plan.buckets is not None:
            params[f"b{i}_lo"], params[f"b{i}_hi"] = plan.buckets
        for j, (lo, hi) in enumerate(plan.edges):
            params[f"e{i}_{j}_lo"], params[f"e{i}_{j}_hi"] = lo, hi
    return (*filters, tuple((plan.buckets is not None, len(plan.edges)) for plan in plans)), params


def _summary_sql(shape: SummaryShape) -> str:
    """``currency, today, last_7_days, last_30_days, all_time`` per currency, ordered."""
    has_currency, has_project, windows = shape
    filters = (has_currency, has_project)
    if windows is None:
        in_window = "e.earned_at >= :{} AND e.earned_at < :until"
        sums = ", ".join(
            f"coalesce(sum(e.amount) FILTER (WHERE {in_window.format(start)}), 0)::bigint"
            f" AS {start}"
            for start in ("today", "last_7_days", "last_30_days")
        )
        return (
            f"SELECT e.currency, {sums}, sum(e.amount)::bigint AS all_time FROM earnings e"
            f" WHERE {_filters('e', filters)} GROUP BY e.currency ORDER BY e.currency"
        )
    parts = [
        "SELECT t.currency, 0::bigint AS today, 0::bigint AS last_7_days,"
        " 0::bigint AS last_30_days, t.amount AS all_time"
        f" FROM earnings_totals t WHERE {_filters('t', filters)}"
    ]
    if any(has_buckets for has_buckets, _ in windows):
        cases = ", ".join(
            f"CASE WHEN r.bucket_start >= :b{i}_lo AND r.bucket_start < :b{i}_hi"
            " THEN r.amount ELSE 0 END"
            if has_buckets
            else "0"
            for i, (has_buckets, _) in enumerate(windows)
        )
        parts.append(
            f"SELECT r.currency, {cases}, 0 FROM earnings_rollups r"
            f" WHERE {_filters('r', filters)}"
            " AND r.bucket_start >= :bmin AND r.bucket_start < :bmax"
        )
    edges = [
        " OR ".join(
            f"(e.earned_at >= :e{i}_{j}_lo AND e.earned_at < :e{i}_{j}_hi)" for j in range(count)
        )
        for i, (_, count) in enumerate(windows)
    ]
    if any(edges):
        cases = ", ".join(
            f"CASE WHEN {edge} THEN e.amount ELSE 0 END" if edge else "0" for edge in edges
        )
        wanted = " OR ".join(edge for edge in edges if edge)
        parts.append(
            f"SELECT e.currency, {cases}, 0 FROM earnings e"
            f" WHERE {_filters('e', filters)} AND ({wanted})"
        )
    union = " UNION ALL ".join(parts)
    return (
        "SELECT s.currency, sum(s.today)::bigint AS today,"
        " sum(s.last_7_days)::bigint AS last_7_days, sum(s.last_30_days)::bigint AS last_30_days,"
        " sum(s.all_time)::bigint AS all_time"
        f" FROM ({union}) s GROUP BY s.currency ORDER BY s.currency"
    )


@lru_cache(maxsize=64)
def _summary_statement(shape: SummaryShape) -> RawStatement:
    return RawStatement.of(text(_summary_sql(shape)))


@lru_cache(maxsize=256)
def _snapshot_statement(page: PageShape, summary: SummaryShape) -> RawStatement:
    """One row: the user row (NULLs when it does not exist), whether the cursor is one
    of the payee's entries, the page and the summary as arrays of records."""
    cursor = f"EXISTS ({_CURSOR})" if page[0] else "true"
    sql = f"""
        SELECT u.roles, u.email, {cursor} AS cursor_found,
               ARRAY(SELECT ROW(p.*) FROM ({_page_sql(page)}) p
                     ORDER BY p.earned_at DESC, p.id DESC) AS page,
               ARRAY(SELECT ROW(s.*) FROM ({_summary_sql(summary)}) s
                     ORDER BY s.currency) AS summary
        FROM (SELECT 1) one LEFT JOIN users u ON u.id = :payee_id
    """
    return RawStatement.of(text(sql))


async def read_snapshot(driver: Any, query: SummaryQuery, page: PageQuery) -> Snapshot:
    """The payee's user row, a page of their entries and the summary (``query``), in one
    statement on the asyncpg connection ``driver``."""
    page_shape, page_params = _page_params(page)
    summary_shape, summary_params = _summary_params(query)
    statement = _snapshot_statement(page_shape, summary_shape)
    row = await driver.fetchrow(
        statement.sql,
        *statement.args({"payee_id": query.payee_id, **page_params, **summary_params}),
    )
    return Snapshot(
        roles=list(row["roles"]) if row["roles"] is not None else None,
        email=row["email"],
        cursor_found=row["cursor_found"],
        rows=[EarningRow(*entry) for entry in row["page"]],
        summary=[SummaryRow(*sums) for sums in row["summary"]],
    )


_ATTRIBUTION_ENTRIES = text(
    """
    SELECT e.id, e.source_type = 'escrow' OR w.id IS NOT NULL AS wallet, e.currency, e.amount,
           LEAST(COALESCE(d.refunded_amount - d.refunded_fee_amount,
                          w.refunded_amount - w.refunded_fee_amount,
                          s.payee_reversed_amount, 0), e.amount) AS reversed,
           e.earned_at, e.project_id
    FROM earnings e
    LEFT JOIN direct_payments d
      ON e.source_type = 'payment' AND d.stripe_payment_intent_id = e.source_id
    -- paid from the payer's wallet: the take landed in the payee's available balance
    LEFT JOIN direct_payments w
      ON e.source_type = 'payment' AND w.funding = 'wallet'
     AND w.order_id = CASE WHEN left(e.source_id, 4) = 'ord_'
                           THEN CAST(substr(e.source_id, 5) AS bigint) END
    -- a completed job whose refund took the payee's take back
    LEFT JOIN escrows s ON e.source_type = 'escrow' AND s.id = e.escrow_id
    WHERE e.payee_id = :payee AND (CAST(:currency AS text) IS NULL OR e.currency = :currency)
    """
)
_ATTRIBUTION_FLOWS = text(
    """
    SELECT currency, sum(transferred) AS transferred, sum(withdrawing) AS withdrawing,
           sum(paid) AS paid
    FROM (
        SELECT currency,
               CASE WHEN status IN ('transferred', 'reversed')
                    THEN amount - amount_reversed ELSE 0 END AS transferred,
               CASE WHEN status = 'pending' THEN amount ELSE 0 END AS withdrawing,
               0 AS paid
        FROM withdrawals WHERE user_id = :payee
        UNION ALL
        SELECT currency, 0, 0, amount FROM payouts WHERE user_id = :payee AND status = 'paid'
    ) flows
    WHERE CAST(:currency AS text) IS NULL OR currency = :currency
    GROUP BY currency
    """
)


# Both in one statement: one snapshot (the entries and the flows agree), one round trip.
_ATTRIBUTION_INPUTS = RawStatement.of(
    text(
        f"""
        SELECT ARRAY(SELECT ROW(e.*) FROM ({_ATTRIBUTION_ENTRIES.text}) e) AS entries,
               ARRAY(SELECT ROW(f.*) FROM ({_ATTRIBUTION_FLOWS.text}) f) AS flows
        """
    )
)


async def attribution_inputs(
    driver: Any, payee_id: str, currency: str | None
) -> tuple[list[Entry], dict[str, Flows]]:
    """The payee's entries (with what refunds took back) and their money's flows per
    currency: what :func:`payout_status.attribute` needs, read in one statement on the
    asyncpg connection ``driver``."""
    row = await driver.fetchrow(
        _ATTRIBUTION_INPUTS.sql,
        *_ATTRIBUTION_INPUTS.args({"payee": payee_id, "currency": currency}),
    )
    entries = [
        Entry(
            id=int(id_),
            wallet=bool(wallet),
            currency=str(code),
            amount=int(amount),
            reversed=int(reversed_),
            earned_at=earned_at,
            project_id=project_id,
        )
        for id_, wallet, code, amount, reversed_, earned_at, project_id in row["entries"]
    ]
    flows = {
        str(code): Flows(
            transferred=int(transferred or 0),
            withdrawing=int(withdrawing or 0),
            paid=int(paid or 0),
        )
        for code, transferred, withdrawing, paid in row["flows"]
    }
    return entries, flows


_DIRECT_SUMS = text(
    """
    SELECT currency,
           coalesce(sum(net_amount) FILTER (
               WHERE funding = 'card'
                 AND (CAST(:project AS bigint) IS NULL OR project_id = :project)), 0) AS net,
           coalesce(sum(refunded_amount - refunded_fee_amount), 0) AS reversed
    FROM direct_payments
    WHERE payee_id = :payee AND (CAST(:currency AS text) IS NULL OR currency = :currency)
    GROUP BY currency
    """
)


_ESCROW_REVERSED = text(
    """
    SELECT currency, sum(payee_reversed_amount) AS reversed
    FROM escrows
    WHERE payee_id = :payee AND payee_reversed_amount > 0
      AND (CAST(:currency AS text) IS NULL OR currency = :currency)
    GROUP BY currency
    """
)


# The three bounded reads of ``attribution_shortcut`` as one statement (one snapshot, one
# round trip, no transaction), run on an asyncpg connection: as three ORM
# executions in a transaction they were a quarter of an earnings page's CPU (bench/cpu.py).
_SHORTCUT = RawStatement.of(
    text(
        f"""
        SELECT 'flows' AS part, currency, transferred AS a, withdrawing AS b, paid AS c
        FROM ({_ATTRIBUTION_FLOWS.text}) flows
        UNION ALL
        SELECT 'direct', currency, net, reversed, 0 FROM ({_DIRECT_SUMS.text}) direct
        UNION ALL
        SELECT 'escrow_reversed', currency, reversed, 0, 0 FROM ({_ESCROW_REVERSED.text}) escrow
        """
    )
)


async def attribution_shortcut(
    driver: Any, payee_id: str, currency: str | None, project: int | None
) -> tuple[dict[str, Flows], dict[str, tuple[int, int]]]:
    """The payee's flows and, per currency, their direct payments' take (in the project,
    when given) and what refunds reversed of it: bounded reads (indexed by payee), so a
    payee whose money never moved needs no walk through their history. One statement on
    the asyncpg connection ``driver``."""
    rows = await driver.fetch(
        _SHORTCUT.sql,
        *_SHORTCUT.args({"payee": payee_id, "currency": currency, "project": project}),
    )
    flows: dict[str, Flows] = {}
    direct: dict[str, tuple[int, int]] = {}
    reversed_by_escrow: dict[str, int] = {}
    for row in rows:
        part, code, a, b, c = row
        if part == "flows":
            flows[code] = Flows(transferred=int(a or 0), withdrawing=int(b or 0), paid=int(c or 0))
        elif part == "direct":
            direct[code] = (int(a), int(b))
        else:
            reversed_by_escrow[code] = int(a or 0)
    # Escrow takes reversed by refunds count as reversals too (the full walk shows them).
    for code, reversed_ in reversed_by_escrow.items():
        net, earlier = direct.get(code, (0, 0))
        direct[code] = (net, earlier + reversed_)
    return flows, direct
