"""Sending events to endpoints: at least once, signed per Standard Webhooks.

A delivery is claimed in a short transaction (``FOR UPDATE SKIP LOCKED`` plus a lease,
so two workers never send the same attempt), sent with no transaction open, and its
outcome recorded in a second transaction that also schedules the retry. The
``webhook-id`` is the event's id on every attempt, so receivers can drop duplicates.

Retries follow ``RETRY_SCHEDULE`` (documented in docs/events.md): ten attempts over
about three days. A delivery that runs out is ``failed`` (an admin may redeliver); an
endpoint with no success for ``events_disable_after_hours`` is disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from payments_api.events import targets
from payments_api.events.outbox import DELIVER_JOB
from payments_api.events.repository import AttemptOutcome, ClaimedDelivery, EventRepository
from payments_api.events.types import EVENT_PREFIX
from payments_api.jobs.queue import enqueue
from payments_api.kit.clock import utcnow
from payments_api.kit.pagination import public_id
from payments_api.settings import Settings

log = logging.getLogger(__name__)

RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=20),
)
"""Waits after attempts 1..9; attempt 10 is the last (71 h 35 min after the first)."""

RESPONSE_EXCERPT_BYTES = 1024

DELIVERIES = Counter(
    "payments_event_delivery_attempts_total",
    "Outgoing event delivery attempts by outcome",
    ["outcome"],
)
DELIVERY_SECONDS = Histogram(
    "payments_event_delivery_seconds", "Time from request to response of a delivery attempt"
)


def envelope(
    event_id: int, event_type: str, created_at_iso: str, user_ids: list[str], payload: object
) -> bytes:
    """The body of a delivery: the event as the feeds return it."""
    return json.dumps(
        {
            "id": public_id(EVENT_PREFIX, event_id),
            "object": "event",
            "type": event_type,
            "created_at": created_at_iso,
            "user_ids": user_ids,
            "data": {"object": payload},
        },
        separators=(",", ":"),
    ).encode()


def sign(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<sig>`` per secret, space-separated: during a rotation both verify."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return " ".join(Webhook(secret).sign(message_id, moment, body) for secret in secrets)


class DeliveryService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        client: httpx.AsyncClient | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.now = now
        self.settings = settings
        self.timeout = settings.events_delivery_timeout_seconds
        self.client = client or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(self.timeout),
            headers={"User-Agent": "payments-api-events/1"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def lease_seconds(self) -> float:
        # Longer than one request can take, so a live worker keeps its claim.
        return self.timeout * 3 + 30

    async def deliver_event(self, event_id: int) -> int:
        """Send every due delivery of one event; how many attempts were made."""
        return await self._drain(event_id=event_id)

    async def deliver(self, delivery_id: int) -> int:
        return await self._drain(delivery_id=delivery_id, limit=1)

    async def sweep(self, *, limit: int = 200) -> int:
        """Retries whose time came and deliveries whose worker died (lease passed)."""
        return await self._drain(limit=limit)

    async def _drain(
        self, *, event_id: int | None = None, delivery_id: int | None = None, limit: int = 100
    ) -> int:
        attempts = 0
        while attempts < limit:
            async with self.sessionmaker.begin() as session:
                claimed = await EventRepository(session).claim(
                    now=self.now(),
                    lease_seconds=self.lease_seconds,
                    event_id=event_id,
                    delivery_id=delivery_id,
                )
            if claimed is None:
                break
            outcome = await self.attempt(claimed)
            await self._record(claimed, outcome)
            attempts += 1
        return attempts

    async def attempt(self, claimed: ClaimedDelivery) -> AttemptOutcome:
        started = time.perf_counter()

        def done(status: int | None, excerpt: str | None, error: str | None) -> AttemptOutcome:
            latency = time.perf_counter() - started
            DELIVERY_SECONDS.observe(latency)
            DELIVERIES.labels(error or "succeeded").inc()
            return AttemptOutcome(status, int(latency * 1000), excerpt, error)

        try:
            target = await targets.resolve(
                claimed.url,
                require_https=self.settings.is_production,
                allow_private=self.settings.events_may_target_private_addresses,
            )
        except targets.TargetRefused as exc:
            return done(None, str(exc)[:RESPONSE_EXCERPT_BYTES], "target_refused")
        message_id = public_id(EVENT_PREFIX, claimed.event_id)
        body = envelope(
            claimed.event_id,
            claimed.event_type,
            claimed.event_created_at.isoformat().replace("+00:00", "Z"),
            claimed.user_ids,
            claimed.payload,
        )
        timestamp = int(self.now().timestamp())
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(claimed.secrets, message_id, timestamp, body),
        }
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
        try:
            request = self.client.build_request(
                "POST", target.url, content=body, headers=headers, extensions=extensions
            )
            response = await self.client.send(request, stream=True)
            try:
                excerpt = await _read_excerpt(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            return done(None, None, "timeout")
        except httpx.HTTPError as exc:
            return done(None, type(exc).__name__, "connection_error")
        if 200 <= response.status_code < 300:
            return done(response.status_code, excerpt, None)
        if 300 <= response.status_code < 400:
            return done(response.status_code, excerpt, "redirect")
        return done(response.status_code, excerpt, "http_status")

    async def _record(self, claimed: ClaimedDelivery, outcome: AttemptOutcome) -> None:
        retry_in = (
            RETRY_SCHEDULE[claimed.attempt - 1]
            if outcome.error is not None and claimed.attempt <= len(RETRY_SCHEDULE)
            else None
        )
        async with self.sessionmaker.begin() as session:
            ours = await EventRepository(session).record_attempt(
                claimed,
                outcome,
                next_attempt_in_seconds=None if retry_in is None else retry_in.total_seconds(),
                disable_after_hours=self.settings.events_disable_after_hours,
                now=self.now(),
            )
            if ours and retry_in is not None:
                await enqueue(
                    session, DELIVER_JOB, f"delivery:{claimed.id}".encode(), delay=retry_in
                )
        if outcome.error is not None:
            log.info(
                "event delivery attempt failed",
                extra={
                    "delivery_id": claimed.id,
                    "attempt": claimed.attempt,
                    "error": outcome.error,
                    "status_code": outcome.status_code,
                },
            )


async def _read_excerpt(response: httpx.Response) -> str | None:
    """At most ``RESPONSE_EXCERPT_BYTES`` of the body: a receiver cannot make us read more."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_EXCERPT_BYTES:
            break
    if not chunks:
        return None
    return b"".join(chunks)[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace").replace("\x00", "")


async def pump(service: DeliveryService, stop: asyncio.Event, *, interval: float = 0.5) -> None:
    """Deliver whatever is due until ``stop`` is set: the sandbox's stand-in for the
    worker, so ``payments-api serve`` alone delivers events (the demo relies on it)."""
    while not stop.is_set():
        try:
            await service.sweep()
        except Exception:  # a failed round is logged; the next one tries again
            log.exception("sandbox event pump: a delivery round failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
