"""The daily reconciliation on the job queue: two workers on one database run it once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from payments_api.jobs.queue import asyncpg_dsn
from payments_api.jobs.worker import build_worker
from payments_api.reconciliation import service as reconciliation_service
from payments_api.settings import Settings
from tests.helpers import stripe_object


def empty_list(url: str) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": [], "has_more": False, "url": url})


class TestScheduledReconciliation:
    async def test_two_workers_run_the_due_daily_job_once(
        self,
        settings: Settings,
        engine: AsyncEngine,
        database_url: str,
        stripe_mock: respx.MockRouter,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        runs: list[str] = []
        original = reconciliation_service.run_scheduled

        async def counted(*args: Any, **kwargs: Any) -> Any:
            runs.append("run")
            return await original(*args, **kwargs)

        # The job body, counted wherever it runs (the workers import it when it fires).
        monkeypatch.setattr(reconciliation_service, "run_scheduled", counted)
        balance = stripe_mock.get("/v1/balance").mock(
            return_value=httpx.Response(200, json=stripe_object("balance"))
        )
        stripe_mock.get("/v1/balance_transactions").mock(
            return_value=empty_list("/v1/balance_transactions")
        )
        stripe_mock.get("/v1/events").mock(return_value=empty_list("/v1/events"))
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        workers = [await build_worker(settings) for _ in range(2)]
        [expression] = [
            key.expression
            for key in workers[0][0].sm.registry
            if key.entrypoint == "reconciliation.daily"
        ]
        # The daily schedule, due now (as it is at 02:30 UTC every day).
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await connection.execute(
                """
                INSERT INTO pgqueuer_schedules (expression, entrypoint, next_run)
                VALUES ($1, 'reconciliation.daily', now() - interval '1 second')
                ON CONFLICT (expression, entrypoint)
                DO UPDATE SET next_run = EXCLUDED.next_run, status = 'queued'
                """,
                expression,
            )
        finally:
            await connection.close()

        tasks = [asyncio.create_task(pgq.run()) for pgq, _close in workers]
        try:
            async with engine.connect() as probe:
                for _ in range(100):  # up to 10 s for the job to finish
                    status = await probe.scalar(
                        text("SELECT status FROM reconciliation_runs WHERE run_date = :d"),
                        {"d": yesterday},
                    )
                    await probe.rollback()
                    if status == "completed":
                        break
                    await asyncio.sleep(0.1)
                # Then until the schedule has moved on to its next day: from there no
                # worker can pick today's run any more, and a second run already picked
                # would be counted, since shutting down below waits for running jobs.
                for _ in range(100):
                    rescheduled = await probe.scalar(
                        text(
                            "SELECT next_run > now() FROM pgqueuer_schedules "
                            "WHERE entrypoint = 'reconciliation.daily' AND expression = :e"
                        ),
                        {"e": expression},
                    )
                    await probe.rollback()
                    if rescheduled:
                        break
                    await asyncio.sleep(0.1)
        finally:
            for pgq, _close in workers:
                pgq.shutdown.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
            for _pgq, close in workers:
                await close()

        async with engine.connect() as probe:
            row = (
                await probe.execute(
                    text(
                        "SELECT status, trigger, attempts FROM reconciliation_runs "
                        "WHERE run_date = :d"
                    ),
                    {"d": yesterday},
                )
            ).one()
            next_run = await probe.scalar(
                text(
                    "SELECT next_run FROM pgqueuer_schedules "
                    "WHERE entrypoint = 'reconciliation.daily' AND expression = :e"
                ),
                {"e": expression},
            )
        assert runs == ["run"]
        assert tuple(row) == ("completed", "schedule", 1)
        assert balance.call_count == 1
        assert next_run > datetime.now(UTC)  # rescheduled for the next day
