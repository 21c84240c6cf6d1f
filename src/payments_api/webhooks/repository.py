from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import RawStatement, attach_instance, detached_instance, driver_connection
from payments_api.webhooks.models import WebhookEvent

COLUMNS: tuple[str, ...] = tuple(column.key for column in WebhookEvent.__table__.columns)

# Hand-written and compiled once, run on the session's asyncpg connection (as the
# ledger's and the escrows' hot statements are): an ORM insert built per delivery (the
# values' coercion, the RETURNING entity's loading) was a seventh of a delivery's CPU
# (bench/README.md). The payload goes in as the JSON text it arrived as.
INSERT_IF_NEW = RawStatement.of(
    text(
        """
        INSERT INTO webhook_events
            (id, endpoint, type, account, created, livemode, api_version, payload,
             status, attempts, last_error, processed_at)
        VALUES (:id, :endpoint, :type, :account, :created, :livemode, :api_version,
                CAST(:payload_json AS jsonb), :status, :attempts, :last_error,
                :processed_at)
        ON CONFLICT (id) DO NOTHING
        RETURNING received_at
        """
    )
)


class WebhookEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_if_new(self, values: dict[str, Any], payload_json: str) -> WebhookEvent | None:
        """Store the event unless its id is already in the inbox: the new row (this
        session's persistent instance, locked by the insert until the transaction ends),
        or None. A concurrent uncommitted insert of the same id makes this wait for its
        end. ``values`` holds every column but the defaulted ones (``received_at``,
        ``next_attempt_at``); ``payload_json`` is ``values["payload"]`` as JSON text."""
        driver = await driver_connection(self.session)
        row = await driver.fetchrow(
            INSERT_IF_NEW.sql, *INSERT_IF_NEW.args({**values, "payload_json": payload_json})
        )
        if row is None:
            return None
        stored = {**values, "received_at": row["received_at"], "next_attempt_at": None}
        event = detached_instance(WebhookEvent, ((name, stored[name]) for name in COLUMNS))
        return attach_instance(self.session, event)

    async def lock(self, event_id: str) -> WebhookEvent | None:
        """The event row, locked; None when another worker holds it (or it is gone)."""
        stmt = (
            select(WebhookEvent)
            .where(WebhookEvent.id == event_id)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        result: WebhookEvent | None = await self.session.scalar(stmt)
        return result

    async def get(self, event_id: str) -> WebhookEvent | None:
        return await self.session.get(WebhookEvent, event_id)

    async def due_for_retry(self, now: datetime, limit: int) -> list[str]:
        stmt = (
            select(WebhookEvent.id)
            .where(WebhookEvent.status == "failed", WebhookEvent.next_attempt_at <= now)
            .order_by(WebhookEvent.next_attempt_at)
            .limit(limit)
        )
        return list((await self.session.scalars(stmt)).all())

    async def stranded(self, before: datetime, limit: int) -> list[str]:
        """Stored but never applied (the process died between the two steps)."""
        stmt = (
            select(WebhookEvent.id)
            .where(WebhookEvent.status == "received", WebhookEvent.received_at < before)
            .limit(limit)
        )
        return list((await self.session.scalars(stmt)).all())

    async def page(
        self, *, status: str | None, limit: int, before: WebhookEvent | None
    ) -> list[WebhookEvent]:
        stmt = select(WebhookEvent).order_by(
            WebhookEvent.received_at.desc(), WebhookEvent.id.desc()
        )
        if status is not None:
            stmt = stmt.where(WebhookEvent.status == status)
        if before is not None:
            stmt = stmt.where(
                (WebhookEvent.received_at < before.received_at)
                | ((WebhookEvent.received_at == before.received_at) & (WebhookEvent.id < before.id))
            )
        return list((await self.session.scalars(stmt.limit(limit))).all())

    async def prune(self, older_than: datetime) -> int:
        result = await self.session.execute(
            delete(WebhookEvent)
            .where(
                WebhookEvent.status.in_(("processed", "ignored")),
                WebhookEvent.received_at < older_than,
            )
            .returning(WebhookEvent.id)
        )
        return len(result.all())
