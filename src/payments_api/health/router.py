from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.deps import StateDep
from payments_api.migrations import current_revisions
from payments_api.problems import ServiceUnavailable, problem_responses
from payments_api.settings import Settings

router = APIRouter(tags=["operations"])

GaugeRefresher = Callable[[async_sessionmaker[AsyncSession]], Awaitable[None]]
"""Reads database state into Prometheus gauges just before a scrape."""


class NotReady(ServiceUnavailable):
    code = "not_ready"
    title = "Service not ready"


class HealthRead(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessRead(BaseModel):
    status: Literal["ready", "not_ready"]
    database: Literal["ok", "unreachable"]
    migrations: Literal["current", "behind", "unknown"]
    sandbox: bool
    stripe: Literal["live", "test", "sandbox"] = Field(
        description="Which Stripe this instance talks to."
    )
    key_namespace: str | None = Field(
        None,
        description="This database's random namespace, the first part of every outgoing "
        "Stripe idempotency key (two databases on one Stripe account never share a key).",
    )


def _stripe_mode(settings: Settings) -> Literal["live", "test", "sandbox"]:
    if settings.stripe_secret_key is None:
        return "sandbox"
    key = settings.stripe_secret_key.get_secret_value()
    return "live" if key.startswith(("sk_live_", "rk_live_")) else "test"


@router.get("/healthz", summary="Liveness: the process is up")
async def get_health() -> HealthRead:
    return HealthRead()


@router.get(
    "/readyz",
    summary="Readiness: database reachable and migrations at head",
    responses=problem_responses(NotReady),
)
async def get_readiness(state: StateDep) -> ReadinessRead:
    database: Literal["ok", "unreachable"] = "ok"
    migrations: Literal["current", "behind", "unknown"] = "unknown"
    namespace: str | None = None
    try:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            current = await current_revisions(connection)
            migrations = "current" if current == set(state.migration_heads) else "behind"
            if migrations == "current":
                namespace = await connection.scalar(text("SELECT namespace FROM installation"))
    except Exception:
        database = "unreachable"
    body = ReadinessRead(
        status="ready" if database == "ok" and migrations == "current" else "not_ready",
        database=database,
        migrations=migrations,
        sandbox=state.settings.sandbox,
        stripe=_stripe_mode(state.settings),
        key_namespace=namespace,
    )
    if body.status != "ready":
        raise NotReady(
            "The service is not ready.",
            headers={"Retry-After": "5"},
            database=database,
            migrations=migrations,
        )
    return body


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    include_in_schema=True,
)
async def get_metrics(request: Request, state: StateDep) -> Response:
    # Gauges that mirror database state (failed events waiting, refunds in flight, open
    # disputes) are read at scrape time, by the refreshers the app was assembled with
    # (main.create_app): health knows no domain.
    refreshers: Sequence[GaugeRefresher] = request.app.state.gauge_refreshers
    for refresh in refreshers:
        await refresh(state.sessionmaker)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
