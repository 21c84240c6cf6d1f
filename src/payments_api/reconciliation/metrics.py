"""Operations metrics owned by reconciliation, plus gauges read from the database.

Counters and gauges set by a run live in the process that ran it; the gauges refreshed
by :func:`refresh_gauges` are read from PostgreSQL, so every replica reports the same
values (call it before rendering ``/metrics``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

RUNS = Counter(
    "payments_reconciliation_runs_total",
    "Reconciliation runs by trigger and outcome (clean, mismatches, failed).",
    ["trigger", "outcome"],
)
MISMATCHES = Gauge(
    "payments_reconciliation_mismatches",
    "Mismatches of the latest reconciliation run, by kind.",
    ["kind"],
)
LAST_RUN = Gauge(
    "payments_reconciliation_last_run_timestamp_seconds",
    "When the latest reconciliation run finished (Unix time).",
)
FAILED_EVENTS_WAITING = Gauge(
    "payments_webhook_events_failed_waiting",
    "Stored Stripe events whose handler failed and that wait for a retry or a replay.",
)
WEBHOOK_EVENTS = Gauge(
    "payments_webhook_events_stored",
    "Stripe events in the inbox (retention window) by type and outcome.",
    ["type", "status"],
)
REFUNDS_IN_FLIGHT = Gauge(
    "payments_refunds_in_flight",
    "Refunds Stripe has not settled yet.",
)
DISPUTES_OPEN = Gauge(
    "payments_disputes_open",
    "Card disputes not closed yet.",
)

WITHDRAWALS_PENDING_OLDEST = Gauge(
    "payments_withdrawals_pending_oldest_seconds",
    "Age of the oldest withdrawal whose transfer outcome is still unknown (0: none).",
)
JOB_QUEUE_DEPTH = Gauge(
    "payments_job_queue_depth",
    "Jobs waiting in the PostgreSQL job queue, by status (queued, picked).",
    ["status"],
)
EVENT_DELIVERIES_BACKLOG = Gauge(
    "payments_event_deliveries_backlog",
    "Outgoing event deliveries not yet succeeded: pending (first try or retrying) and "
    "failed (schedule exhausted, waiting for an admin).",
    ["status"],
)
WEBHOOK_ENDPOINTS_DISABLED = Gauge(
    "payments_webhook_endpoints_disabled",
    "Registered outgoing-event endpoints that are disabled.",
)

MISMATCH_KINDS = ("missing_in_ledger", "missing_at_stripe", "amount_differs")


async def refresh_gauges(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Read the operational gauges from the database (cheap: small, indexed tables)."""
    async with sessionmaker() as session:
        failed = await session.scalar(
            text("SELECT count(*) FROM webhook_events WHERE status = 'failed'")
        )
        FAILED_EVENTS_WAITING.set(int(failed or 0))
        WEBHOOK_EVENTS.clear()
        rows = await session.execute(
            text("SELECT type, status, count(*) FROM webhook_events GROUP BY type, status")
        )
        for event_type, status, count in rows:
            WEBHOOK_EVENTS.labels(type=event_type, status=status).set(count)
        in_flight = await session.scalar(
            text("SELECT count(*) FROM refunds WHERE status IN ('pending', 'requires_action')")
        )
        REFUNDS_IN_FLIGHT.set(int(in_flight or 0))
        open_disputes = await session.scalar(
            text("SELECT count(*) FROM disputes WHERE closed_at IS NULL")
        )
        DISPUTES_OPEN.set(int(open_disputes or 0))
        latest = await session.execute(
            text(
                """
                SELECT m.kind, count(m.id)
                FROM (SELECT id FROM reconciliation_runs WHERE status = 'completed'
                      ORDER BY run_date DESC LIMIT 1) r
                LEFT JOIN reconciliation_mismatches m ON m.run_id = r.id
                GROUP BY m.kind
                """
            )
        )
        counts = {kind: count for kind, count in latest if kind is not None}
        for kind in MISMATCH_KINDS:
            MISMATCHES.labels(kind=kind).set(counts.get(kind, 0))
        oldest = await session.scalar(
            text(
                "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) "
                "FROM withdrawals WHERE status = 'pending'"
            )
        )
        WITHDRAWALS_PENDING_OLDEST.set(float(oldest or 0))
        queue: dict[str, int] = dict(
            (await session.execute(text("SELECT status, count(*) FROM pgqueuer GROUP BY 1"))).all()
        )
        for status in ("queued", "picked"):
            JOB_QUEUE_DEPTH.labels(status=status).set(int(queue.get(status, 0)))
        deliveries: dict[str, int] = dict(
            (
                await session.execute(
                    text(
                        "SELECT status, count(*) FROM event_deliveries "
                        "WHERE status <> 'succeeded' GROUP BY 1"
                    )
                )
            ).all()
        )
        for status in ("pending", "failed"):
            EVENT_DELIVERIES_BACKLOG.labels(status=status).set(int(deliveries.get(status, 0)))
        disabled = await session.scalar(
            text("SELECT count(*) FROM webhook_endpoints WHERE status = 'disabled'")
        )
        WEBHOOK_ENDPOINTS_DISABLED.set(int(disabled or 0))
