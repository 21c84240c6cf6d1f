"""An app whose middleware and routes commit for real (separate connections), plus a
probe router whose write route counts its executions and credits the ledger each time
it runs (a fresh cause key per execution, so running twice credits twice)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.deps import CurrentUser, SessionDep
from payments_api.idempotency.models import IdempotencyKey
from payments_api.kit.idempotency import one_transaction
from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.service import AccountRef, LedgerService
from payments_api.money import Currency, MinorAmount
from payments_api.problems import ProblemError, ServiceUnavailable
from tests.factories import fund

PROBE = "/api/v1/test-idempotency"
ONE_TRANSACTION_CREDITS = f"{PROBE}/one-transaction-credits"


class ProbeConflict(ProblemError):
    status = 409
    code = "probe_conflict"
    title = "The probe refused after writing"


@dataclasses.dataclass
class Probe:
    """What the probe routes did, and what they should do next."""

    executions: int = 0
    entered: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    gate: asyncio.Event | None = None
    """When set, the write route waits for it (at most 5 s) before writing."""
    failures: list[str] = dataclasses.field(default_factory=list)
    """Consumed one per execution: "raise" (unhandled error after the write), "503", or
    "409" (a problem after the write: a result to keep, without the write)."""


class CreditCreate(BaseModel):
    amount: MinorAmount
    currency: Currency


def probe_router(probe: Probe) -> APIRouter:
    router = APIRouter()

    @router.post(f"{PROBE}/credits", status_code=201)
    async def create_credit(
        body: CreditCreate, user: CurrentUser, session: SessionDep, response: Response
    ) -> dict[str, Any]:
        probe.executions += 1
        probe.entered.set()
        if probe.gate is not None:
            await asyncio.wait_for(probe.gate.wait(), timeout=5)
        result = await fund(session, user.id, body.amount, body.currency)
        failure = probe.failures.pop(0) if probe.failures else None
        if failure == "raise":
            raise RuntimeError("after the ledger write")
        if failure == "503":
            raise ServiceUnavailable("Try again.", headers={"Retry-After": "1"})
        response.headers["Location"] = f"{PROBE}/credits/{result.transaction.id}"
        response.set_cookie("probe_session", "must-not-be-replayed")
        # A fresh nonce per execution: a replay is recognised by repeating it.
        return {"transaction_id": result.transaction.id, "nonce": uuid.uuid4().hex}

    @router.post(ONE_TRANSACTION_CREDITS, status_code=201)
    @one_transaction
    async def create_credit_in_one_transaction(
        body: CreditCreate, user: CurrentUser, session: SessionDep, response: Response
    ) -> dict[str, Any]:
        probe.executions += 1
        probe.entered.set()
        if probe.gate is not None:
            await asyncio.wait_for(probe.gate.wait(), timeout=5)
        result = await fund(session, user.id, body.amount, body.currency)
        failure = probe.failures.pop(0) if probe.failures else None
        if failure == "raise":
            raise RuntimeError("after the ledger write")
        if failure == "503":
            raise ServiceUnavailable("Try again.", headers={"Retry-After": "1"})
        if failure == "409":
            raise ProbeConflict("Refused after the ledger write.")
        response.headers["Location"] = f"{ONE_TRANSACTION_CREDITS}/{result.transaction.id}"
        return {"transaction_id": result.transaction.id, "nonce": uuid.uuid4().hex}

    @router.delete(f"{PROBE}/credits/{{credit_id}}", status_code=204)
    async def delete_credit(credit_id: str, user: CurrentUser) -> None:
        probe.executions += 1

    @router.post(f"{PROBE}/echo")
    async def echo(body: dict[str, Any], user: CurrentUser) -> dict[str, Any]:
        probe.executions += 1
        return {"user": user.id, "body": body, "nonce": uuid.uuid4().hex}

    @router.get(f"{PROBE}/echo")
    async def read_echo(user: CurrentUser) -> dict[str, Any]:
        probe.executions += 1
        return {"user": user.id, "nonce": uuid.uuid4().hex}

    @router.post("/api/v1/webhooks/test-idempotency")
    async def webhook_like() -> dict[str, str]:
        probe.executions += 1
        return {"nonce": uuid.uuid4().hex}

    return router


@pytest.fixture
def committed(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def committed_app(
    app_factory: Any, committed: async_sessionmaker[AsyncSession], probe: Probe
) -> Callable[..., FastAPI]:
    """Build an app (settings overrides allowed) whose sessions commit for real."""

    def build(**overrides: object) -> FastAPI:
        app: FastAPI = app_factory(**overrides)
        app.include_router(probe_router(probe))
        app.state.resources = dataclasses.replace(app.state.resources, sessionmaker=committed)
        return app

    return build


@pytest.fixture
async def idem_client(committed_app: Callable[..., FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=committed_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def fresh_id(prefix: str = "idem") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def available(sessions: async_sessionmaker[AsyncSession], user_id: str) -> int:
    async with sessions.begin() as session:
        return await LedgerService(session).balance_of(
            AccountRef.user(user_id, AccountKind.available, "usd")
        )


async def stored_key(
    sessions: async_sessionmaker[AsyncSession], user_id: str, key: str
) -> IdempotencyKey | None:
    async with sessions() as session:
        row: IdempotencyKey | None = await session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.user_id == user_id, IdempotencyKey.key == key
            )
        )
        return row
