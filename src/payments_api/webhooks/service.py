"""The webhook inbox: verify, store, then apply exactly once.

1. The raw body's ``Stripe-Signature`` is verified (any configured secret, timestamp
   within the tolerance in both directions) before anything is parsed.
2. A new event is stored under Stripe's event id (``ON CONFLICT DO NOTHING``), already
   marked with its outcome, and applied in the same transaction, one COMMIT: the
   stored event and the handler's writes commit together, and the delivery is
   acknowledged only after that commit. A crash before it leaves nothing (Stripe was
   not answered 2xx and delivers again); a concurrent delivery of the same event waits
   on the uncommitted row, then finds it processed and answers 200. No savepoint
   around the handler: when it fails, the whole transaction is rolled back and the
   event is stored with its failure in a second one (4.).
3. An event already in the inbox (a redelivery, a retry job, an admin replay) is
   applied in a transaction that locks its row (SKIP LOCKED: a concurrent delivery
   sees it taken and answers 200; the holder either applies it or records the
   failure).
4. A failing handler is recorded on the row (attempts, error, next attempt) and a
   retry job is enqueued with exponential backoff in the same transaction; the
   response is non-2xx so Stripe retries as well. Whichever comes first applies it;
   the other finds it processed.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.audit.repository import AuditLogRepository
from payments_api.jobs.queue import enqueue
from payments_api.kit.backoff import doubling_delay
from payments_api.kit.clock import utcnow
from payments_api.kit.stripe_flow import StripeFlow
from payments_api.kit.text import holds_unstorable_text
from payments_api.settings import Settings, webhook_secrets
from payments_api.stripe.gateway import (
    InvalidWebhookSignature,
    StripeGateway,
    verify_webhook_signature,
)
from payments_api.stripe.objects import MalformedStripeObject
from payments_api.webhooks.errors import (
    WebhookEndpointNotConfigured,
    WebhookEventNotFound,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)
from payments_api.webhooks.models import WebhookEvent
from payments_api.webhooks.registry import HandlerContext, HandlerTable, StripeEvent
from payments_api.webhooks.repository import WebhookEventRepository

log = logging.getLogger(__name__)

Endpoint = Literal["platform", "connect"]
Outcome = Literal[
    "processed", "duplicate", "in_progress", "ignored", "failed", "malformed", "missing"
]
RETRY_JOB = "webhooks.apply"

WEBHOOK_EVENTS = Counter(
    "payments_webhook_events_total",
    "Stripe events applied, by type and outcome",
    ["type", "outcome"],
)


def retry_delay(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at 6 h."""
    return doubling_delay(attempts, first=timedelta(seconds=30), cap=timedelta(hours=6))


# Unix seconds of a plausible timestamp: 10 ASCII digits (until the year 2286). A longer
# or non-ASCII "number" (e.g. Unicode digits) used to reach int() and datetime with
# values they cannot hold: an unauthenticated 500.
_TIMESTAMP = re.compile(r"[0-9]{1,10}")
MAX_SIGNATURE_HEADER = 4096


def _signature_timestamp(header: str) -> int | None:
    if len(header) > MAX_SIGNATURE_HEADER:
        return None
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and _TIMESTAMP.fullmatch(value):
            return int(value)
    return None


# What the inbox can store (webhook_events columns) and a sane event time: Stripe's
# events are from this century.
_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,250}")
_EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,128}")
_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]{1,250}")
_API_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CREATED_RANGE = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01


def _is(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _not_json(constant: str) -> Any:
    # json.loads takes NaN and Infinity, which are not JSON and which the inbox's jsonb
    # column refuses: the body is not JSON.
    raise ValueError(f"{constant} is not JSON")


def _payload_json(payload: bytes, event: dict[str, Any]) -> str:
    """The event as JSON text for the inbox: the body as it arrived when it is plain
    UTF-8 (no second serialization of the whole event), else the parsed event."""
    if not payload.startswith(codecs.BOM_UTF8):
        # UTF-16 or UTF-32 (json.loads detects them) fall through to the parsed event.
        with contextlib.suppress(UnicodeDecodeError):
            return payload.decode("utf-8")
    return json.dumps(event)


def event_from_row(row: WebhookEvent) -> StripeEvent:
    payload = row.payload
    return StripeEvent(
        id=row.id,
        type=row.type,
        created=int(row.created.timestamp()),
        livemode=row.livemode,
        account=row.account,
        data_object=payload.get("data", {}).get("object", {}),
        payload=payload,
    )


class WebhookEventAdmin:
    """The inbox as admins read it, in the request's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.repository = WebhookEventRepository(session)

    async def page(
        self, *, status: str | None, limit: int, starting_after: str | None
    ) -> list[WebhookEvent]:
        before = None
        if starting_after:  # empty: the first page, as on every list
            before = await self.repository.get(starting_after)
            if before is None:
                raise WebhookEventNotFound("Unknown `starting_after` event.")
        return await self.repository.page(status=status, limit=limit + 1, before=before)


class WebhookService(StripeFlow):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeGateway,
        settings: Settings,
        handlers: HandlerTable,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        """``handlers``: every domain's handlers, merged in ``payments_api/webhook_handlers.py``
        (``STRIPE_HANDLERS``); handed in because the inbox sits below the domains."""
        super().__init__(sessionmaker, stripe, settings, now=now)
        self.handlers = handlers

    def verify(self, endpoint: Endpoint, payload: bytes, signature: str | None) -> None:
        secrets = webhook_secrets(self.settings, endpoint)
        if not secrets:
            raise WebhookEndpointNotConfigured("No such route.")
        tolerance = self.settings.webhook_tolerance_seconds
        timestamp = _signature_timestamp(signature or "")
        if timestamp is None:
            raise WebhookSignatureInvalid("The Stripe-Signature header is missing or garbled.")
        if timestamp > time.time() + tolerance:
            raise WebhookSignatureInvalid("The signature timestamp is in the future.")
        try:
            verify_webhook_signature(payload, signature, secrets, tolerance)
        except InvalidWebhookSignature as exc:
            raise WebhookSignatureInvalid("The signature does not match.") from exc

    @staticmethod
    def parse(payload: bytes) -> dict[str, Any]:
        try:
            event = json.loads(payload, parse_constant=_not_json)
        except ValueError as exc:
            raise WebhookPayloadInvalid("The body is not JSON.") from exc
        if not (
            isinstance(event, dict)
            and isinstance(event.get("id"), str)
            and _EVENT_ID.fullmatch(event["id"])
            and isinstance(event.get("type"), str)
            and _EVENT_TYPE.fullmatch(event["type"])
            and isinstance(event.get("created"), int)
            and not isinstance(event.get("created"), bool)
            and _CREATED_RANGE[0] <= event["created"] <= _CREATED_RANGE[1]
            and isinstance(event.get("data"), dict)
            and isinstance(event["data"].get("object"), dict)
            and (event.get("account") is None or _is(_ACCOUNT, event.get("account")))
            and (event.get("api_version") is None or _is(_API_VERSION, event.get("api_version")))
        ):
            # Signed, but not something the inbox can hold: a 400 Stripe shows in its
            # dashboard, before any database work.
            raise WebhookPayloadInvalid("The body is not a Stripe event object.")
        if holds_unstorable_text(event):
            raise WebhookPayloadInvalid("The event holds NUL characters or lone surrogates.")
        return event

    async def receive(self, endpoint: Endpoint, payload: bytes, signature: str | None) -> Outcome:
        """Verify, store and apply one delivery: a new event in one transaction, one
        already stored as :meth:`apply` does."""
        self.verify(endpoint, payload, signature)
        event = self.parse(payload)
        livemode = bool(event.get("livemode", False))
        handler = self.handlers.handler_for(endpoint, event["type"])
        now = self.now()
        # Stored with its outcome: nobody sees the row before this transaction commits,
        # and a success leaves it so (no UPDATE after the handler).
        if livemode != self._expected_livemode():
            log.warning("ignoring event %s: livemode=%s mismatch", event["id"], livemode)
            outcome: Outcome = "ignored"
            last_error: str | None = "livemode_mismatch"
        else:
            outcome, last_error = ("processed" if handler is not None else "ignored"), None
        values: dict[str, Any] = {
            "id": event["id"],
            "endpoint": endpoint,
            "type": event["type"],
            "account": event.get("account"),
            "created": datetime.fromtimestamp(event["created"], UTC),
            "livemode": livemode,
            "api_version": event.get("api_version"),
            "payload": event,
            "status": outcome,
            "attempts": 1 if outcome == "processed" else 0,
            "last_error": last_error,
            "processed_at": now,
        }
        payload_json = _payload_json(payload, event)
        row: WebhookEvent | None = None
        try:
            async with self.sessionmaker.begin() as session:
                row = await WebhookEventRepository(session).insert_if_new(values, payload_json)
                if row is not None and handler is not None and outcome == "processed":
                    await handler(
                        event_from_row(row),
                        HandlerContext(session=session, stripe=self.stripe, settings=self.settings),
                    )
        except Exception as exc:
            if row is None:
                raise  # storing failed, not the handler: nothing to record
            # No savepoint around the handler (two round trips less per delivery): its
            # failure rolled the whole transaction back, and the event is stored with
            # the failure in a transaction of its own.
            return await self._store_failed(values, payload_json, exc, now)
        if row is None:
            return await self.apply(event["id"])
        WEBHOOK_EVENTS.labels(event["type"], outcome).inc()
        return outcome

    async def _store_failed(
        self, values: dict[str, Any], payload_json: str, exc: Exception, now: datetime
    ) -> Outcome:
        """Store a new event whose first application failed, with that failure and its
        retry. When a redelivery stored the event in between, that delivery owns it (it
        applies it or records its own failure); this one still answers "failed", so
        Stripe delivers again."""
        outcome: Outcome = "failed"
        async with self.sessionmaker.begin() as session:
            row = await WebhookEventRepository(session).insert_if_new(
                {**values, "status": "failed", "processed_at": None}, payload_json
            )
            if row is not None:
                outcome = await self._record_failure(session, row, exc, now)
        WEBHOOK_EVENTS.labels(values["type"], outcome).inc()
        return outcome

    def _expected_livemode(self) -> bool:
        key = self.settings.stripe_secret_key
        return key is not None and key.get_secret_value().startswith(("sk_live_", "rk_live_"))

    async def apply(self, event_id: str, *, force: bool = False) -> Outcome:
        """Apply a stored event once. ``force`` re-runs an applied one (admin replay;
        handlers are idempotent so this changes nothing that already happened)."""
        outcome, event_type = await self._apply(event_id, force=force)
        WEBHOOK_EVENTS.labels(event_type, outcome).inc()
        return outcome

    async def _apply(self, event_id: str, *, force: bool) -> tuple[Outcome, str]:
        async with self.sessionmaker.begin() as session:
            repository = WebhookEventRepository(session)
            row = await repository.lock(event_id)
            if row is None:
                return ("in_progress" if await repository.get(event_id) else "missing"), "unknown"
            if row.status in ("processed", "ignored") and not force:
                return "duplicate", row.type
            return await self._apply_row(session, row)

    async def _apply_row(self, session: AsyncSession, row: WebhookEvent) -> tuple[Outcome, str]:
        """Apply the event of ``row`` (locked by this transaction) and record how it went."""
        now = self.now()
        if row.livemode != self._expected_livemode():
            log.warning("ignoring event %s: livemode=%s mismatch", row.id, row.livemode)
            row.status, row.processed_at, row.last_error = "ignored", now, "livemode_mismatch"
            return "ignored", row.type
        handler = self.handlers.handler_for(row.endpoint, row.type)
        if handler is None:  # unknown types are stored and acknowledged
            row.status, row.processed_at = "ignored", now
            return "ignored", row.type
        row.attempts += 1
        try:
            async with session.begin_nested():
                await handler(
                    event_from_row(row),
                    HandlerContext(session=session, stripe=self.stripe, settings=self.settings),
                )
        except Exception as exc:
            return await self._record_failure(session, row, exc, now), row.type
        row.status, row.processed_at, row.last_error = "processed", now, None
        row.next_attempt_at = None
        return "processed", row.type

    async def _record_failure(
        self, session: AsyncSession, row: WebhookEvent, exc: Exception, now: datetime
    ) -> Outcome:
        """Record on ``row`` that applying it failed (``row.attempts`` counts this
        attempt) and schedule the retry, in ``session``'s transaction."""
        row.status = "failed"
        row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
        log.warning(
            "webhook %s (%s) failed, attempt %s: %s",
            row.id,
            row.type,
            row.attempts,
            row.last_error,
        )
        if isinstance(exc, MalformedStripeObject):
            # Stripe's object lacks what the handler reads: a retry would read the
            # same payload. Kept as failed for an operator (replay after a fix),
            # acknowledged so Stripe stops redelivering it.
            row.next_attempt_at = None
            return "malformed"
        if row.attempts < self.settings.webhook_max_attempts:
            delay = retry_delay(row.attempts)
            row.next_attempt_at = now + delay
            await enqueue(
                session, RETRY_JOB, row.id.encode(), delay=delay, dedupe_key=f"webhook:{row.id}"
            )
        else:
            row.next_attempt_at = None  # waits for an admin replay
        return "failed"

    async def sweep(self, *, limit: int = 100) -> int:
        """Apply events whose retry is due or that were stored but never applied."""
        now = self.now()
        async with self.sessionmaker.begin() as session:
            repository = WebhookEventRepository(session)
            due = await repository.due_for_retry(now, limit)
            due += await repository.stranded(now - timedelta(minutes=2), limit)
        for event_id in due:
            await self.apply(event_id)
        return len(due)

    async def prune(self) -> int:
        cutoff = self.now() - timedelta(days=self.settings.webhook_retention_days)
        async with self.sessionmaker.begin() as session:
            return await WebhookEventRepository(session).prune(cutoff)

    async def replay(self, event_id: str, *, actor_id: str, request_id: str | None) -> WebhookEvent:
        """Apply a stored event again (handlers are idempotent), audited."""
        async with self.sessionmaker() as session:
            before = await WebhookEventRepository(session).get(event_id)
            if before is None:
                raise WebhookEventNotFound()
            before_state = {"status": before.status, "attempts": before.attempts}
        await self.apply(event_id, force=True)
        async with self.sessionmaker.begin() as session:
            row = await WebhookEventRepository(session).get(event_id)
            if row is None:
                raise WebhookEventNotFound()
            await AuditLogRepository(session).record(
                actor_id=actor_id,
                action="webhook_event.replay",
                target_type="webhook_event",
                target_id=event_id,
                before=before_state,
                after={"status": row.status, "attempts": row.attempts},
                reason=None,
                request_id=request_id,
            )
            return row
