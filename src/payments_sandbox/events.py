"""Delivery of the sandbox's events to the service's own webhook routes.

Stripe's behaviour, reproduced: an event is POSTed only after the change it reports has
committed, signed with the endpoint secret (``Stripe-Signature: t=<unix>,v1=<HMAC-SHA256
of "<t>.<body>">``, here the sandbox's secret, random per data folder:
``sandbox_webhook_secret``), sent to the platform endpoint or, for events of a
connected account, the Connect endpoint, and retried with exponential backoff until a
2xx answer.

On the service's job queue (pgqueuer, ``payments_api.jobs.queue``), like every other
background task: ``EventRepository.add`` enqueues a ``sandbox.events.deliver`` job in
the transaction that writes the event to the ``sandbox_events`` outbox, so the job exists
if and only if the change committed; ``deliver_event`` is that job (one attempt; a
failure queues the next one, delayed). ``housekeeping`` (the ``sandbox.housekeeping``
schedule) also queues again any pending event whose job was lost (a process killed
mid-delivery). Who runs the jobs: ``payments_sandbox.worker``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.kit.backoff import doubling_delay
from payments_api.kit.clock import utcnow
from payments_api.sandbox_secret import sandbox_webhook_secret
from payments_api.settings import Settings
from payments_sandbox.models import SandboxEvent
from payments_sandbox.repository import EventRepository, IdempotencyRepository
from payments_sandbox.service import SandboxStripe

log = logging.getLogger(__name__)

PLATFORM_PATH = "/api/v1/webhooks/stripe"
CONNECT_PATH = "/api/v1/webhooks/stripe/connect"
MAX_ATTEMPTS = 12
"""After this many failed attempts an event is ``failed`` (the admin page resends it)."""
LEASE = timedelta(seconds=60)
"""An attempt in flight holds its event this long (longer than the POST's timeout):
the housekeeping sweep queues again only events overdue by more than this."""
DELIVERY_TIMEOUT_SECONDS = 30.0
HOUSEKEEPING_SCHEDULE = "sandbox.housekeeping"
HOUSEKEEPING_CRON = "* * * * *"
IDEMPOTENCY_RETENTION = timedelta(hours=24)


def retry_delay(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s, ... capped at one hour (Stripe's own retries span 3 days)."""
    return doubling_delay(attempts, first=timedelta(seconds=5), cap=timedelta(hours=1))


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header, computed exactly as Stripe computes it."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def endpoint_url(settings: Settings, account: str | None) -> str:
    """Where Stripe would send the event: Connect events to the Connect endpoint."""
    base = settings.public_base_url.rstrip("/")
    return base + (CONNECT_PATH if account else PLATFORM_PATH)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: str
    account: str | None
    body: bytes
    attempts: int


async def _post(
    client: httpx.AsyncClient, settings: Settings, event: _Claimed
) -> tuple[int | None, str | None]:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign(event.body, sandbox_webhook_secret(settings)),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks) payments-api-sandbox",
    }
    try:
        response = await client.post(
            endpoint_url(settings, event.account),
            content=event.body,
            headers=headers,
            timeout=DELIVERY_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:1000]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, response.text[:1000]


async def deliver_event(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    job: str,
    *,
    client: httpx.AsyncClient,
    now: datetime | None = None,
) -> bool:
    """One delivery attempt (the ``sandbox.events.deliver`` job, payload ``job``:
    ``<event id>:<attempts made when it was queued>``); returns whether it was made.

    Not made when the event was delivered or given up, or was attempted since the job
    was queued (a twin job from a resend or the housekeeping sweep took it): each
    attempt is taken once, under the row's lock. No transaction is open during the
    POST: the attempt is taken (and its event leased) in one short transaction, and the
    outcome is recorded in another, with the next attempt's job.
    """
    now = now or utcnow()
    event_id, _, queued_after = job.rpartition(":")
    async with sessionmaker.begin() as session:
        row = await session.get(SandboxEvent, event_id, with_for_update=True)
        if row is None or row.status != "pending" or str(row.attempts) != queued_after:
            return False
        row.attempts += 1
        row.next_attempt_at = now + LEASE
        event = _Claimed(
            id=row.id,
            account=row.account,
            body=json.dumps(row.payload, indent=2).encode(),
            attempts=row.attempts,
        )
    status, error = await _post(client, settings, event)
    async with sessionmaker.begin() as session:
        row = await session.get(SandboxEvent, event.id, with_for_update=True)
        if row is None:  # pragma: no cover - events are never deleted
            return True
        row.last_status = status
        if error is None:
            row.status, row.delivered_at = "delivered", utcnow()
            row.next_attempt_at, row.last_error = None, None
            return True
        row.last_error = error
        if event.attempts >= MAX_ATTEMPTS:
            row.status, row.next_attempt_at = "failed", None
            log.warning("sandbox event %s failed %s times; giving up", row.id, MAX_ATTEMPTS)
            return True
        delay = retry_delay(event.attempts)
        row.next_attempt_at = now + delay
        await EventRepository(session).queue_delivery(row.id, row.attempts, delay=delay)
        log.info(
            "sandbox event %s (%s) not accepted (status %s); retry at %s",
            row.id,
            row.type,
            status,
            row.next_attempt_at.isoformat(),
        )
    return True


async def resend(sessionmaker: async_sessionmaker[AsyncSession], event_id: str) -> bool:
    """Queue an event again (delivered or given up), like Stripe dashboard's "Resend"."""
    async with sessionmaker.begin() as session:
        row = await session.get(SandboxEvent, event_id, with_for_update=True)
        if row is None:
            return False
        row.status, row.next_attempt_at, row.attempts = "pending", utcnow(), 0
        await EventRepository(session).queue_delivery(row.id, 0)
        return True


async def housekeeping(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    now: datetime | None = None,
) -> None:
    """Expire Checkout Sessions past their time; forget idempotency keys after 24 h;
    queue again the pending events overdue by more than a lease (their job was lost)."""
    now = now or utcnow()
    async with sessionmaker.begin() as session:
        expired = await SandboxStripe(session, settings).expire_due_sessions()
        await IdempotencyRepository(session).prune(now - IDEMPOTENCY_RETENTION)
        events = EventRepository(session)
        for event_id, attempts in await events.overdue(now - LEASE):
            await events.queue_delivery(event_id, attempts)
    if expired:
        log.info("sandbox expired %s checkout sessions", expired)
