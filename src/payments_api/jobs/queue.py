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
from pgqueuer.adapters.persistence.qb import QueryQueueBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import driver_connection


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The database URL as asyncpg (and so pgqueuer) takes it."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


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


# pgqueuer's own statement for enqueueing (a duplicate dedupe key is skipped), built once
# and sent on the session's connection. ``Queries.enqueue`` builds it again on every call,
# with a new ``Queries`` (whose settings read the environment) and its parameter and
# tracing-header handling around it: about 0.3 ms of CPU per job, paid with every event
# that has an endpoint (bench/events.py, ``on+endpoint``).
_ENQUEUE = QueryQueueBuilder().build_enqueue_query("skip")
_NO_DELAY = timedelta(0)
_NO_HEADERS = "null"  # what pgqueuer sends for a job without headers (JSON null)


async def enqueue(
    session: AsyncSession,
    entrypoint: str,
    payload: bytes,
    *,
    delay: timedelta | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Enqueue a job in the session's current transaction."""
    connection = await driver_connection(session)
    await connection.fetch(
        _ENQUEUE,
        [0],  # priority
        [entrypoint],
        [payload],
        [delay or _NO_DELAY],
        [dedupe_key],
        [_NO_HEADERS],
    )
