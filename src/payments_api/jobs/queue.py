"""Background work on pgqueuer, a PostgreSQL-backed job queue that speaks asyncpg.

Chosen over a hand-rolled polling loop: it brings FOR UPDATE SKIP LOCKED dequeueing,
LISTEN/NOTIFY wake-ups, deferred execution (``execute_after``) for backoff, dedupe keys
and cron schedules, all in the same PostgreSQL the service already uses.

Jobs are enqueued inside the caller's database transaction (through the session's
asyncpg connection), so a job exists if and only if the work that asked for it
committed.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from pgqueuer import AsyncpgDriver, Queries
from sqlalchemy.ext.asyncio import AsyncSession


async def install_queue_schema(dsn: str) -> None:
    """Create pgqueuer's tables, or bring them up to the installed library's version."""
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        if await queries.schema_is_installed():
            await queries.upgrade()
        else:
            await queries.install()
    finally:
        await connection.close()


async def enqueue(
    session: AsyncSession,
    entrypoint: str,
    payload: bytes,
    *,
    delay: timedelta | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Enqueue a job in the session's current transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver_connection = raw.driver_connection
    queries = Queries(AsyncpgDriver(driver_connection))
    await queries.enqueue(
        entrypoint,
        payload,
        execute_after=delay,
        dedupe_key=dedupe_key,
        on_conflict="skip",
    )
