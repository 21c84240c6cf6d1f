"""Daily reconciliation of the ledger against Stripe.

A run reconciles one UTC day and is idempotent per day: the ``reconciliation_runs`` row
of the day is claimed (a concurrent run of the same day gets 409), Stripe is read with
no database transaction open (the platform balance, every balance transaction of the day
plus a grace period on each side, the events Stripe reports undelivered), then one
transaction reads the ledger, matches both sides object by object (see ``matching``) and
replaces the day's snapshots and mismatches. Rerunning a day recomputes it from scratch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.audit.repository import AuditLogRepository
from payments_api.kit.clock import utcnow
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.kit.reads import read_of
from payments_api.kit.stripe_flow import StripeFlow
from payments_api.problems import ProblemError
from payments_api.reconciliation import metrics
from payments_api.reconciliation.errors import (
    ReconciliationDateInFuture,
    ReconciliationInProgress,
    ReconciliationRunNotFound,
    ReconciliationWindowTooLarge,
)
from payments_api.reconciliation.matching import (
    Item,
    LedgerMovement,
    aggregate,
    ledger_item,
    links,
    match,
    payment_of_fee,
    stripe_items,
    unresolved_fees,
)
from payments_api.reconciliation.models import (
    ReconciliationMismatch,
    ReconciliationRun,
    ReconciliationSnapshot,
)
from payments_api.reconciliation.repository import ReconciliationRepository
from payments_api.reconciliation.schemas import (
    MismatchRead,
    ReconciliationRunList,
    ReconciliationRunRead,
    ReconciliationRunSummary,
    SnapshotRead,
    UndeliveredEventRead,
)
from payments_api.settings import Settings
from payments_api.stripe.errors import PaymentProviderError
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import Balance, BalanceAmount, BalanceTransaction, UndeliveredEvent
from payments_api.stripe.refunds import ListTooLong

log = logging.getLogger(__name__)

RUN_PREFIX = "rec"
# A run still "running" after this long crashed: another run may take the day over.
STALE_RUN = timedelta(minutes=15)
# Application fees looked up per run (fee refunds of fees taken on an earlier day).
MAX_FEE_LOOKUPS = 1_000


def day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def summary(run: ReconciliationRun) -> ReconciliationRunSummary:
    return read_of(
        ReconciliationRunSummary, run, id=public_id(RUN_PREFIX, run.id), date=run.run_date
    )


async def run_detail(
    repository: ReconciliationRepository, run: ReconciliationRun
) -> ReconciliationRunRead:
    snapshots, mismatches = await repository.results(run.id)
    return ReconciliationRunRead(
        **summary(run).model_dump(),
        window_start=run.window_start,
        window_end=run.window_end,
        snapshots=[SnapshotRead.model_validate(s, from_attributes=True) for s in snapshots],
        mismatches=[
            read_of(
                MismatchRead,
                m,
                balance_transaction_ids=list(m.balance_transaction_ids),
                ledger_transaction_ids=[public_id("ltx", i) for i in m.ledger_transaction_ids],
            )
            for m in mismatches
        ],
        undelivered_events=[UndeliveredEventRead(**e) for e in run.undelivered_events],
    )


@dataclass(frozen=True)
class StripeSnapshot:
    """What Stripe said about a day's window, read before the run's transaction opens."""

    start: datetime
    end: datetime
    grace: timedelta
    """Balance transactions this long before and after the day are read too."""
    balance: Balance
    transactions: list[BalanceTransaction]
    undelivered: list[UndeliveredEvent]
    fees: dict[str, str]
    """Application fees refunded in the window but taken earlier -> their PaymentIntent."""


def _in(moment: datetime, start: datetime, end: datetime) -> bool:
    return start <= moment < end


class ReconciliationService(StripeFlow):
    def yesterday(self) -> date:
        return self.now().date() - timedelta(days=1)

    async def run(
        self,
        day: date,
        *,
        trigger: str,
        actor_id: str | None = None,
        request_id: str | None = None,
    ) -> ReconciliationRunRead:
        """Reconcile ``day`` (UTC) against Stripe, replacing any earlier result of it."""
        now = self.now()
        if day > now.date():
            raise ReconciliationDateInFuture(f"{day} has not started yet (UTC).")
        start, end = day_window(day)
        grace = timedelta(minutes=self.settings.reconciliation_grace_minutes)
        run_id, before = await self._claim(day, start, end, trigger=trigger, actor_id=actor_id)
        try:
            balance = await self.stripe.retrieve_balance()
            transactions = await self.stripe.list_balance_transactions(
                created_gte=start - grace,
                created_lt=end + grace,
                limit=self.settings.reconciliation_max_balance_transactions,
            )
            undelivered = await self.stripe.list_undelivered_events(
                created_gte=start, created_lt=end
            )
            fees = await self._fee_payments(transactions)
        except ListTooLong as exc:
            await self._fail(run_id, "window_too_large", trigger)
            raise ReconciliationWindowTooLarge(
                "Raise PAYMENTS_RECONCILIATION_MAX_BALANCE_TRANSACTIONS to reconcile this day."
            ) from exc
        except ProblemError as exc:
            await self._fail(run_id, exc.code, trigger)
            raise
        snapshot = StripeSnapshot(start, end, grace, balance, transactions, undelivered, fees)
        try:
            detail = await self._record(
                run_id,
                day,
                snapshot,
                trigger=trigger,
                actor_id=actor_id,
                request_id=request_id,
                before=before,
            )
        except Exception:
            await self._fail(run_id, "internal_error", trigger)
            raise
        self._observe(detail, trigger)
        return detail

    async def _record(
        self,
        run_id: int,
        day: date,
        snapshot: StripeSnapshot,
        *,
        trigger: str,
        actor_id: str | None,
        request_id: str | None,
        before: dict[str, Any] | None,
    ) -> ReconciliationRunRead:
        async with self.sessionmaker.begin() as session:
            repository = ReconciliationRepository(session)
            run = await repository.get(run_id, for_update=True)
            if run is None:  # pragma: no cover - claimed above
                raise ReconciliationRunNotFound()
            await self._compute(repository, run, snapshot)
            run.status, run.finished_at = "completed", self.now()
            if actor_id is not None:
                await AuditLogRepository(session).record(
                    actor_id=actor_id,
                    action="reconciliation.run",
                    target_type="reconciliation_run",
                    target_id=public_id(RUN_PREFIX, run.id),
                    before=before,
                    after=summary(run).model_dump(mode="json"),
                    reason=f"Reconcile {day.isoformat()} ({trigger})",
                    request_id=request_id,
                )
            return await run_detail(repository, run)

    async def _fee_payments(self, transactions: list[BalanceTransaction]) -> dict[str, str]:
        """Application fees refunded in the window but taken earlier, looked up at Stripe
        so their refunds match their direct payment (fee id -> PaymentIntent)."""
        found: dict[str, str] = {}
        for fee_id in unresolved_fees(transactions, links(transactions))[:MAX_FEE_LOOKUPS]:
            try:
                fee = await self.stripe.retrieve_application_fee(fee_id)
            except PaymentProviderError:
                log.warning("reconciliation: application fee %s not found at Stripe", fee_id)
                continue
            intent = payment_of_fee(fee)
            if intent is not None:
                found[fee_id] = intent
        return found

    async def _claim(
        self, day: date, start: datetime, end: datetime, *, trigger: str, actor_id: str | None
    ) -> tuple[int, dict[str, Any] | None]:
        now = self.now()
        async with self.sessionmaker.begin() as session:
            repository = ReconciliationRepository(session)
            previous = await repository.by_date(day)
            before = summary(previous).model_dump(mode="json") if previous else None
            run_id = await repository.claim(
                {
                    "run_date": day,
                    "trigger": trigger,
                    "requested_by": actor_id,
                    "window_start": start,
                    "window_end": end,
                    "now": now,
                    "stale_before": now - STALE_RUN,
                }
            )
        if run_id is None:
            raise ReconciliationInProgress(
                f"{day} is being reconciled right now; retry in a few minutes."
            )
        return run_id, before

    async def _fail(self, run_id: int, code: str, trigger: str) -> None:
        async with self.sessionmaker.begin() as session:
            run = await ReconciliationRepository(session).get(run_id, for_update=True)
            if run is not None:
                run.status, run.error_code, run.finished_at = "failed", code[:64], self.now()
        metrics.RUNS.labels(trigger=trigger, outcome="failed").inc()
        log.warning("reconciliation run %s failed: %s", run_id, code)

    async def _compute(
        self,
        repository: ReconciliationRepository,
        run: ReconciliationRun,
        snapshot: StripeSnapshot,
    ) -> None:
        start, end, grace = snapshot.start, snapshot.end, snapshot.grace
        balance, transactions, fees = snapshot.balance, snapshot.transactions, snapshot.fees
        undelivered = snapshot.undelivered
        excluded: dict[str, int] = defaultdict(int)
        stripe_day: list[Item] = []
        stripe_window: list[Item] = []
        day_transactions = 0
        context = links(transactions, fees)
        for transaction in transactions:
            in_day = _in(datetime.fromtimestamp(transaction.created, UTC), start, end)
            day_transactions += in_day
            items = stripe_items(transaction, context)
            if items is None:
                if in_day:
                    net = transaction.net
                    excluded[transaction.currency.lower()] += (
                        transaction.amount if net is None else net
                    )
                continue
            stripe_window.extend(items)
            if in_day:
                stripe_day.extend(items)

        movements = await repository.stripe_movements(start - grace, end + grace)
        unattributed: dict[str, int] = defaultdict(int)
        ledger_day: list[Item] = []
        ledger_window: list[Item] = []
        day_movements: set[int] = set()
        for movement in movements:
            in_day = _in(movement.created_at, start, end)
            if in_day:
                day_movements.add(movement.transaction_id)
            item = ledger_item(movement)
            if item is None:
                if in_day:
                    unattributed[movement.currency] += _stripe_effect(movement)
                continue
            ledger_window.append(item)
            if in_day:
                ledger_day.append(item)

        outcome = match(
            stripe_day=[i.key for i in stripe_day],
            ledger_day=[i.key for i in ledger_day],
            stripe_window=aggregate(stripe_window),
            ledger_window=aggregate(ledger_window),
        )
        ledger_balances = await repository.stripe_balances()
        stripe_available = _by_currency(balance.available)
        stripe_pending = _by_currency(balance.pending)
        currencies = sorted(
            {
                *stripe_available,
                *stripe_pending,
                *ledger_balances,
                *(i.currency for i in stripe_day),
                *(i.currency for i in ledger_day),
                *excluded,
                *unattributed,
            }
        )
        snapshots = []
        for currency in currencies:
            ledger_balance = -ledger_balances.get(currency, 0)
            available = stripe_available.get(currency, 0)
            pending = stripe_pending.get(currency, 0)
            snapshots.append(
                ReconciliationSnapshot(
                    currency=currency,
                    stripe_available=available,
                    stripe_pending=pending,
                    ledger_balance=ledger_balance,
                    balance_difference=available + pending - ledger_balance,
                    stripe_day_net=sum(i.amount for i in stripe_day if i.currency == currency),
                    ledger_day_net=sum(i.amount for i in ledger_day if i.currency == currency),
                    stripe_excluded_net=excluded.get(currency, 0),
                    ledger_unattributed_net=unattributed.get(currency, 0),
                )
            )
        mismatches = [
            ReconciliationMismatch(
                kind=m.kind,
                object_type=m.object_type,
                stripe_object_id=m.stripe_id,
                currency=m.currency,
                stripe_amount=m.stripe_amount,
                ledger_amount=m.ledger_amount,
                balance_transaction_ids=m.balance_transaction_ids,
                ledger_transaction_ids=m.ledger_transaction_ids,
            )
            for m in outcome.mismatches
        ]
        await repository.replace_results(run, snapshots, mismatches)
        inbox = await repository.inbox_statuses([e.id for e in undelivered])
        run.undelivered_events = [
            {
                "id": e.id,
                "type": e.type,
                "created": datetime.fromtimestamp(e.created, UTC).isoformat(),
                "in_inbox": e.id in inbox,
                "inbox_status": inbox.get(e.id),
            }
            for e in undelivered
        ]
        run.stripe_transaction_count = day_transactions
        run.ledger_transaction_count = len(day_movements)
        run.matched_count = outcome.matched
        run.mismatch_count = len(outcome.mismatches)

    @staticmethod
    def _observe(detail: ReconciliationRunRead, trigger: str) -> None:
        outcome = "mismatches" if detail.mismatch_count else "clean"
        metrics.RUNS.labels(trigger=trigger, outcome=outcome).inc()
        for kind in metrics.MISMATCH_KINDS:
            metrics.MISMATCHES.labels(kind=kind).set(
                sum(1 for m in detail.mismatches if m.kind == kind)
            )
        metrics.LAST_RUN.set((detail.finished_at or utcnow()).timestamp())
        if detail.mismatch_count:
            log.warning("reconciliation of %s: %s mismatches", detail.date, detail.mismatch_count)


def _stripe_effect(movement: LedgerMovement) -> int:
    return -movement.stripe_balance_amount


def _by_currency(entries: list[BalanceAmount]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        totals[entry.currency.lower()] += entry.amount
    return dict(totals)


class ReconciliationQueries:
    def __init__(self, session: AsyncSession) -> None:
        self.repository = ReconciliationRepository(session)

    async def get(self, run_id: str) -> ReconciliationRunRead:
        number = parse_public_id(RUN_PREFIX, run_id)
        run = await self.repository.get(number) if number is not None else None
        if run is None:
            raise ReconciliationRunNotFound()
        return await run_detail(self.repository, run)

    async def list(self, *, limit: int, starting_after: str | None) -> ReconciliationRunList:
        before_date = None
        cursor = parse_cursor(RUN_PREFIX, starting_after)
        if cursor is not None:
            anchor = await self.repository.get(cursor)
            if anchor is None:
                raise ReconciliationRunNotFound("Unknown `starting_after` run.")
            before_date = anchor.run_date
        rows = await self.repository.page(limit=limit + 1, before_date=before_date)
        return ReconciliationRunList(
            data=[summary(r) for r in rows[:limit]], has_more=len(rows) > limit
        )


async def run_scheduled(
    sessionmaker: async_sessionmaker[AsyncSession], stripe: StripeGateway, settings: Settings
) -> ReconciliationRunRead | None:
    """The worker's daily job: reconcile yesterday (UTC). Never raises: a failure is
    recorded on the run and logged; the next day's job or an admin reruns it."""
    service = ReconciliationService(sessionmaker, stripe, settings)
    day = service.yesterday()
    try:
        return await service.run(day, trigger="schedule")
    except ReconciliationInProgress:
        log.info("reconciliation of %s already running elsewhere", day)
    except Exception:
        log.exception("scheduled reconciliation of %s failed", day)
    return None
