"""The sandbox's jobs on the service's job queue (pgqueuer), run in the web process.

``payments-api serve`` may run without ``payments-api worker``, and the sandbox lives
only in the web process (``payments_api.main`` loads it when there is no Stripe key), so
the sandbox's router starts its own pgqueuer consumer there, for its own entrypoints
only: the ``sandbox.events.deliver`` jobs and the ``sandbox.housekeeping`` schedule.
pgqueuer hands each job to one consumer, so several web processes may each run one;
the service's worker does not take these jobs (it registers none of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import httpx
from pgqueuer import PgQueuer
from pgqueuer.models import Job, Schedule
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.db import asyncpg_dsn
from payments_api.settings import Settings
from payments_sandbox.events import (
    HOUSEKEEPING_CRON,
    HOUSEKEEPING_SCHEDULE,
    deliver_event,
    housekeeping,
)
from payments_sandbox.repository import DELIVER_JOB

log = logging.getLogger(__name__)


def register(
    pgq: PgQueuer,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    client: httpx.AsyncClient,
) -> None:
    """The sandbox's entrypoint and schedule on ``pgq``."""

    # One delivery at a time, in queue order (the order the changes committed), as the
    # sandbox always delivered: the demo's flows (a renewal that fails: invoice, then
    # subscription) rely on it, though real Stripe promises no order.
    @pgq.entrypoint(DELIVER_JOB, concurrency_limit=1)
    async def deliver(job: Job) -> None:
        await deliver_event(sessionmaker, settings, (job.payload or b"").decode(), client=client)

    @pgq.schedule(HOUSEKEEPING_SCHEDULE, HOUSEKEEPING_CRON)
    async def keep_house(_schedule: Schedule) -> None:
        await housekeeping(sessionmaker, settings)


class SandboxWorker:
    """pgqueuer's queue manager and scheduler for the sandbox's jobs, as a task of the
    web process (started and stopped by the sandbox router's lifespan)."""

    def __init__(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.sessionmaker = sessionmaker
        self.settings = settings
        self._client = httpx.AsyncClient()
        self._pool: asyncpg.Pool | None = None
        self._pgq: PgQueuer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2)
        self._pgq = PgQueuer.from_asyncpg_pool(self._pool)
        register(self._pgq, self.sessionmaker, self.settings, self._client)
        self._task = asyncio.create_task(self._run(self._pgq), name="sandbox-jobs")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @staticmethod
    async def _run(pgq: PgQueuer) -> None:
        try:
            await pgq.run()
        except Exception:
            log.exception("the sandbox's job consumer stopped")
            raise

    async def stop(self) -> None:
        if self._pgq is not None:
            self._pgq.shutdown.set()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._task
        if self._pool is not None:
            await self._pool.close()
        await self._client.aclose()
