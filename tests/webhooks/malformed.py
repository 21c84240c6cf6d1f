"""What every malformed-event test asserts: the event is stored ``failed`` with the
missing field named, never marked processed, never scheduled again, and no apply job
is queued for it (a retry would read the same object)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.webhooks.models import WebhookEvent


async def assert_recorded_malformed(session: AsyncSession, event_id: str, error: str) -> None:
    stored = await session.get(WebhookEvent, event_id, populate_existing=True)
    assert stored is not None
    assert stored.status == "failed"
    assert stored.processed_at is None
    assert stored.last_error == error
    assert stored.next_attempt_at is None


async def apply_jobs_queued(session: AsyncSession) -> int:
    jobs = await session.scalar(
        text("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'webhooks.apply'")
    )
    return int(jobs or 0)
