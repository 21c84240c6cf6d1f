"""The worker process: ``payments-api worker``.

Runs pgqueuer's queue manager and scheduler on the service's PostgreSQL:
- ``webhooks.apply``: retry one stored Stripe event (enqueued with backoff on failure);
- ``payouts.recover`` (job and every minute): finish withdrawals whose transfer outcome
  is unknown, with the same Stripe idempotency key;
- ``webhooks.sweep`` every minute: due retries and events stored but never applied;
- ``webhooks.prune`` daily, ``idempotency.prune`` hourly: retention;
- ``reconciliation.daily`` (``PAYMENTS_RECONCILIATION_CRON``): yesterday against Stripe;
- ``refunds.recover`` every 5 minutes: admin refunds stuck before Stripe's answer;
- ``escrow.capture`` (queued, delayed, with each capture or release of an escrow paid by
  authorization) and ``escrow.captures.recover`` every 5 minutes: ask Stripe again for
  captures and releases with no answer (same idempotency key);
- ``events.deliver`` (queued with each event that has endpoints, and for each retry) and
  ``events.sweep`` every minute: outgoing event deliveries (docs/events.md);
- ``receipts.sweep`` every minute: email receipts, when ``PAYMENTS_SMTP_URL`` is set;
- ``events.prune`` daily: outgoing events past ``PAYMENTS_EVENTS_RETENTION_DAYS``.
Any number of workers may run; pgqueuer hands each job to one of them.

A composition root, like ``main.py``: it names every domain that has a job, so it sits
at the top of the package, above them all (``jobs/`` keeps only the queue, which
domains use to enqueue).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.models import Job, Schedule

from payments_api.db import asyncpg_dsn, create_engine, create_sessionmaker, resolve_database_url
from payments_api.escrow.capture import EscrowCaptures
from payments_api.escrow.service import CAPTURE_JOB
from payments_api.events.delivery import DeliveryService
from payments_api.events.outbox import DELIVER_JOB
from payments_api.events.receipts import ReceiptSender
from payments_api.events.repository import EventRepository
from payments_api.idempotency.service import prune_expired
from payments_api.kit.clock import utcnow
from payments_api.payins import wire_purposes
from payments_api.payment_methods.auto_reload import CHARGE_JOB as AUTO_RELOAD_JOB
from payments_api.payouts.service import RECOVER_JOB, PayoutService
from payments_api.reconciliation import service as reconciliation_service
from payments_api.refunds.invoices import InvoiceRefundService
from payments_api.refunds.service import RefundService
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from payments_api.topups.auto_reload import charge_auto_reload as charge_topup
from payments_api.webhook_handlers import STRIPE_HANDLERS
from payments_api.webhooks.service import RETRY_JOB, WebhookService

log = logging.getLogger(__name__)


def _row_id(job: Job, number: str, entrypoint: str) -> int | None:
    """The row id ``number`` (read off ``job``'s payload) names; None, logged, when the
    payload is malformed (a retry would not mend it)."""
    if number.isascii() and number.isdigit():
        return int(number)
    log.error("%s: malformed payload %r", entrypoint, job.payload)
    return None


async def build_worker(settings: Settings) -> tuple[PgQueuer, Any]:
    wire_purposes()
    url = resolve_database_url(settings)
    engine = create_engine(url, settings)
    sessionmaker = create_sessionmaker(engine)
    stripe = StripeGateway(settings)
    webhooks = WebhookService(sessionmaker, stripe, settings, STRIPE_HANDLERS)
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=4)
    pgq = PgQueuer.from_asyncpg_pool(pool)

    @pgq.entrypoint(RETRY_JOB)
    async def apply_webhook(job: Job) -> None:
        event_id = (job.payload or b"").decode()
        outcome = await webhooks.apply(event_id)
        log.info("retried webhook %s: %s", event_id, outcome)

    payouts = PayoutService(sessionmaker, stripe, settings)

    @pgq.entrypoint(RECOVER_JOB)
    async def recover_withdrawal(job: Job) -> None:
        withdrawal_id = int((job.payload or b"0").decode())
        await payouts.transfer_and_settle(withdrawal_id)

    @pgq.schedule("payouts.recover", "* * * * *")
    async def recover_withdrawals(_schedule: Schedule) -> None:
        await payouts.recover()

    @pgq.schedule("webhooks.sweep", "* * * * *")
    async def sweep_webhooks(_schedule: Schedule) -> None:
        await webhooks.sweep()

    @pgq.schedule("webhooks.prune", "17 3 * * *")
    async def prune_webhooks(_schedule: Schedule) -> None:
        log.info("pruned %s webhook events", await webhooks.prune())

    @pgq.schedule("idempotency.prune", "7 * * * *")
    async def prune_idempotency_keys(_schedule: Schedule) -> None:
        async with sessionmaker.begin() as session:
            log.info("pruned %s idempotency keys", await prune_expired(session))

    @pgq.schedule("reconciliation.daily", settings.reconciliation_cron)
    async def reconcile_yesterday(_schedule: Schedule) -> None:
        await reconciliation_service.run_scheduled(sessionmaker, stripe, settings)

    @pgq.schedule("refunds.recover", "*/5 * * * *")
    async def recover_refunds(_schedule: Schedule) -> None:
        await RefundService(sessionmaker, stripe, settings).recover()
        await InvoiceRefundService(sessionmaker, stripe, settings).recover()

    captures = EscrowCaptures(sessionmaker, stripe, settings)

    @pgq.entrypoint(CAPTURE_JOB)
    async def submit_capture(job: Job) -> None:
        escrow_id = _row_id(job, (job.payload or b"").decode(), CAPTURE_JOB)
        if escrow_id is not None:
            await captures.submit(escrow_id)

    @pgq.schedule("escrow.captures.recover", "*/5 * * * *")
    async def recover_captures(_schedule: Schedule) -> None:
        await captures.recover()

    @pgq.entrypoint(AUTO_RELOAD_JOB)
    async def charge_auto_reload(job: Job) -> None:
        reload_id = _row_id(job, (job.payload or b"").decode(), AUTO_RELOAD_JOB)
        if reload_id is not None:
            await charge_topup(sessionmaker, stripe, settings, reload_id)

    deliveries = DeliveryService(sessionmaker, settings)

    @pgq.entrypoint(DELIVER_JOB)
    async def deliver_events(job: Job) -> None:
        kind, _, number = (job.payload or b"").decode().partition(":")
        row_id = _row_id(job, number, DELIVER_JOB)
        if row_id is None:
            return
        if kind == "event":
            await deliveries.deliver_event(row_id)
        else:
            await deliveries.deliver(row_id)

    @pgq.schedule("events.sweep", "* * * * *")
    async def sweep_deliveries(_schedule: Schedule) -> None:
        await deliveries.sweep()

    receipts = ReceiptSender(sessionmaker, settings)

    @pgq.schedule("events.prune", "27 3 * * *")
    async def prune_events(_schedule: Schedule) -> None:
        cutoff = utcnow() - timedelta(days=settings.events_retention_days)
        async with sessionmaker.begin() as session:
            log.info("pruned %s outgoing events", await EventRepository(session).prune(cutoff))

    @pgq.schedule("receipts.sweep", "* * * * *")
    async def send_receipts(_schedule: Schedule) -> None:
        await receipts.sweep()

    async def close() -> None:
        await deliveries.aclose()
        await pool.close()
        await stripe.aclose()
        await engine.dispose()

    return pgq, close
