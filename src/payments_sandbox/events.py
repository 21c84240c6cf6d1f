"""Delivery of the sandbox's events to the service's own webhook routes.

Stripe's behaviour, reproduced: an event is POSTed only after the change it reports has
committed (it is read from the ``sandbox_events`` outbox written in that transaction),
signed with the endpoint secret (``Stripe-Signature: t=<unix>,v1=<HMAC-SHA256 of
"<t>.<body>">``, here the sandbox's secret, random per data folder:
``sandbox_webhook_secret``), sent to the platform endpoint or, for events of a
connected account, the Connect endpoint, and retried with exponential backoff until a
2xx answer. The outbox survives restarts.

``deliver_pending`` does one round (tests call it directly); ``Deliverer`` runs rounds
in the background of the web process, woken at once when a sandbox request commits.
"""

from __future__ import annotations

import asyncio
import contextlib
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
"""A claimed event is not claimed again for this long (its delivery is in flight)."""
DELIVERY_TIMEOUT_SECONDS = 30.0
IDLE_WAIT_SECONDS = 5.0
HOUSEKEEPING_EVERY_SECONDS = 30.0
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


async def deliver_pending(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    client: httpx.AsyncClient | None = None,
    now: datetime | None = None,
    limit: int = 100,
) -> int:
    """POST every due event once, oldest first; returns how many were attempted.

    No transaction is open during a POST: the events are claimed (leased) in one short
    transaction, and each outcome is recorded in another.
    """
    now = now or utcnow()
    async with sessionmaker.begin() as session:
        rows = await EventRepository(session).claim_due(now, LEASE, limit)
        claimed = [
            _Claimed(
                id=row.id,
                account=row.account,
                body=json.dumps(row.payload, indent=2).encode(),
                attempts=row.attempts,
            )
            for row in rows
        ]
    if not claimed:
        return 0
    own_client = client is None
    http = client or httpx.AsyncClient()
    try:
        for event in claimed:
            status, error = await _post(http, settings, event)
            async with sessionmaker.begin() as session:
                row = await session.get(SandboxEvent, event.id, with_for_update=True)
                if row is None:  # pragma: no cover - events are never deleted
                    continue
                row.last_status = status
                if error is None:
                    row.status, row.delivered_at = "delivered", utcnow()
                    row.next_attempt_at, row.last_error = None, None
                    continue
                row.last_error = error
                if event.attempts >= MAX_ATTEMPTS:
                    row.status, row.next_attempt_at = "failed", None
                    log.warning("sandbox event %s failed %s times; giving up", row.id, MAX_ATTEMPTS)
                else:
                    row.next_attempt_at = now + retry_delay(event.attempts)
                    log.info(
                        "sandbox event %s (%s) not accepted (status %s); retry at %s",
                        row.id,
                        row.type,
                        status,
                        row.next_attempt_at.isoformat(),
                    )
    finally:
        if own_client:
            await http.aclose()
    return len(claimed)


async def resend(sessionmaker: async_sessionmaker[AsyncSession], event_id: str) -> bool:
    """Queue an event again (delivered or given up), like Stripe dashboard's "Resend"."""
    async with sessionmaker.begin() as session:
        row = await session.get(SandboxEvent, event_id, with_for_update=True)
        if row is None:
            return False
        row.status, row.next_attempt_at, row.attempts = "pending", utcnow(), 0
        return True


async def housekeeping(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Expire Checkout Sessions past their time; forget idempotency keys after 24 h."""
    async with sessionmaker.begin() as session:
        expired = await SandboxStripe(session, settings).expire_due_sessions()
        await IdempotencyRepository(session).prune(utcnow() - IDEMPOTENCY_RETENTION)
    if expired:
        log.info("sandbox expired %s checkout sessions", expired)


class Deliverer:
    """The web process's background delivery loop (sandbox mode only).

    ``payments-api serve`` may run without the worker, so the sandbox delivers from the
    web process itself. Several processes may run one each: events are claimed with
    ``SKIP LOCKED`` leases, so each is POSTed by one of them at a time.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """A sandbox change committed: deliver now rather than at the next tick."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sandbox-webhook-delivery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def _run(self) -> None:
        last_housekeeping = 0.0
        while True:
            self._wake.clear()
            try:
                if time.monotonic() - last_housekeeping >= HOUSEKEEPING_EVERY_SECONDS:
                    last_housekeeping = time.monotonic()
                    await housekeeping(self.sessionmaker, self.settings)
                if await deliver_pending(self.sessionmaker, self.settings, client=self._client):
                    continue  # more may be due (or were emitted meanwhile)
                wait = await self._seconds_until_next()
            except Exception:
                log.exception("sandbox webhook delivery round failed")
                wait = IDLE_WAIT_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _seconds_until_next(self) -> float:
        async with self.sessionmaker() as session:
            due = await EventRepository(session).next_due()
        if due is None:
            return IDLE_WAIT_SECONDS
        return min(max((due - utcnow()).total_seconds(), 0.05), IDLE_WAIT_SECONDS)
