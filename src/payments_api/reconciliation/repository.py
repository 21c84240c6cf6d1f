from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.fresh_rows import fresh_row, newest_first
from payments_api.reconciliation.matching import LedgerMovement
from payments_api.reconciliation.models import (
    ReconciliationMismatch,
    ReconciliationRun,
    ReconciliationSnapshot,
)

CLAIM_RUN = text(
    """
    INSERT INTO reconciliation_runs
        (run_date, status, trigger, requested_by, attempts, window_start, window_end,
         started_at)
    VALUES (:run_date, 'running', :trigger, :requested_by, 1, :window_start, :window_end,
            :now)
    ON CONFLICT (run_date) DO UPDATE SET
        status = 'running',
        trigger = EXCLUDED.trigger,
        requested_by = EXCLUDED.requested_by,
        attempts = reconciliation_runs.attempts + 1,
        window_start = EXCLUDED.window_start,
        window_end = EXCLUDED.window_end,
        started_at = EXCLUDED.started_at,
        finished_at = NULL,
        error_code = NULL
    WHERE reconciliation_runs.status <> 'running'
       OR reconciliation_runs.started_at < CAST(:stale_before AS timestamptz)
    RETURNING id
    """
)

# Every ledger transaction's net posting on the platform's stripe_balance, per currency.
# A subscription invoice booked before invoices kept their PaymentIntent names none in
# its (append-only) metadata: the PaymentIntent (else the charge) stored on the invoice
# since, by its backfill, names the payment reconciliation matches it to.
STRIPE_MOVEMENTS = text(
    """
    WITH moved AS (
        SELECT t.id, t.type, t.cause_key, t.metadata, t.created_at, p.currency,
               sum(p.amount)::bigint AS amount
        FROM ledger_accounts a
        JOIN ledger_postings p ON p.account_id = a.id
        JOIN ledger_transactions t ON t.id = p.transaction_id
        WHERE a.kind = 'stripe_balance' AND a.owner_user_id IS NULL
          AND t.created_at >= :start AND t.created_at < :end
        GROUP BY t.id, p.currency
        HAVING sum(p.amount) <> 0
    )
    SELECT m.id, m.type, m.cause_key, m.created_at, m.currency, m.amount,
           CASE WHEN i.id IS NULL THEN m.metadata
                ELSE m.metadata || jsonb_strip_nulls(jsonb_build_object(
                    'payment_intent',
                    coalesce(i.stripe_payment_intent_id, i.stripe_charge_id)))
           END AS metadata
    FROM moved m
    LEFT JOIN subscription_invoices i
      ON m.type = 'subscription_payment'
     AND m.metadata->>'payment_intent' IS NULL
     AND i.stripe_invoice_id = m.metadata->>'invoice'
    ORDER BY m.id
    """
)

STRIPE_BALANCES = text(
    """
    SELECT a.currency, coalesce(sum(b.balance), 0)::bigint AS balance
    FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
    WHERE a.kind = 'stripe_balance' AND a.owner_user_id IS NULL
    GROUP BY a.currency
    """
)


class ReconciliationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_date(self, run_date: date) -> ReconciliationRun | None:
        where = ReconciliationRun.run_date == run_date
        return await fresh_row(self.session, ReconciliationRun, where)

    async def get(self, run_id: int, *, for_update: bool = False) -> ReconciliationRun | None:
        where = ReconciliationRun.id == run_id
        return await fresh_row(self.session, ReconciliationRun, where, for_update=for_update)

    async def claim(self, values: dict[str, Any]) -> int | None:
        """Start (or restart) the day's run; None while another run of it is going on."""
        run_id = await self.session.scalar(CLAIM_RUN, values)
        return int(run_id) if run_id is not None else None

    async def stripe_movements(self, start: datetime, end: datetime) -> list[LedgerMovement]:
        rows = await self.session.execute(STRIPE_MOVEMENTS, {"start": start, "end": end})
        return [
            LedgerMovement(
                transaction_id=row.id,
                cause_key=row.cause_key,
                metadata=row.metadata or {},
                created_at=row.created_at,
                currency=row.currency,
                stripe_balance_amount=row.amount,
                type=row.type,
            )
            for row in rows
        ]

    async def stripe_balances(self) -> dict[str, int]:
        rows = await self.session.execute(STRIPE_BALANCES)
        return {row.currency: int(row.balance) for row in rows}

    async def inbox_statuses(self, event_ids: list[str]) -> dict[str, str]:
        if not event_ids:
            return {}
        rows = await self.session.execute(
            text("SELECT id, status FROM webhook_events WHERE id = ANY(:ids)"), {"ids": event_ids}
        )
        return {row.id: row.status for row in rows}

    async def replace_results(
        self,
        run: ReconciliationRun,
        snapshots: list[ReconciliationSnapshot],
        mismatches: list[ReconciliationMismatch],
    ) -> None:
        """The day's result replaces the previous run's: idempotent per day."""
        await self.session.execute(
            delete(ReconciliationMismatch).where(ReconciliationMismatch.run_id == run.id)
        )
        await self.session.execute(
            delete(ReconciliationSnapshot).where(ReconciliationSnapshot.run_id == run.id)
        )
        for snapshot in snapshots:
            snapshot.run_id = run.id
        for mismatch in mismatches:
            mismatch.run_id = run.id
        self.session.add_all([*snapshots, *mismatches])
        await self.session.flush()

    async def results(
        self, run_id: int
    ) -> tuple[list[ReconciliationSnapshot], list[ReconciliationMismatch]]:
        """The run's result as ``replace_results`` stored it: its snapshots by currency,
        and its mismatches."""
        snapshots = await self.session.scalars(
            select(ReconciliationSnapshot)
            .where(ReconciliationSnapshot.run_id == run_id)
            .order_by(ReconciliationSnapshot.currency)
        )
        snapshot_rows = list(snapshots.all())
        mismatches = await self.session.scalars(
            select(ReconciliationMismatch)
            .where(ReconciliationMismatch.run_id == run_id)
            .order_by(ReconciliationMismatch.id)
        )
        return snapshot_rows, list(mismatches.all())

    async def page(self, *, limit: int, before_date: date | None) -> list[ReconciliationRun]:
        return await newest_first(
            self.session,
            ReconciliationRun,
            ReconciliationRun.run_date,
            limit=limit,
            before=before_date,
        )
