from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.webhooks.models import WebhookEvent


class WebhookEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_if_new(self, values: dict[str, Any]) -> WebhookEvent | None:
        """Store the event unless its id is already in the inbox: the new row (this
        session's, locked by the insert until the transaction ends), or None. A
        concurrent uncommitted insert of the same id makes this wait for its end."""
        stmt = (
            insert(WebhookEvent)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[WebhookEvent.id])
            .returning(WebhookEvent)
        )
        row: WebhookEvent | None = await self.session.scalar(stmt)
        return row

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
