"""Shared by the escrow and earnings tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.earnings.models import Earning
from payments_api.escrow.models import Escrow
from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.models import LedgerPosting, LedgerTransaction
from payments_api.ledger.service import AccountRef, LedgerService
from payments_api.projects.models import Project
from payments_api.users.models import User
from tests.factories import create_user
from tests.helpers import auth

ESCROWS = "/api/v1/escrows"


def headers(sub: str, roles: list[str], key: str | None = None) -> dict[str, str]:
    """Bearer token plus a fresh (or given) Idempotency-Key."""
    return {**auth(sub, roles), "Idempotency-Key": key or uuid.uuid4().hex}


async def parties(session: AsyncSession, tag: str = "") -> tuple[User, User]:
    """A customer and a payee with fresh ids."""
    suffix = f"{tag}-{uuid.uuid4().hex[:8]}"
    customer = await create_user(session, id=f"cust{suffix}", roles=["customer"])
    payee = await create_user(session, id=f"payee{suffix}", roles=["payee"])
    return customer, payee


async def own_project(session: AsyncSession, payee_id: str, currency: str = "usd") -> str:
    """A project of ``payee_id``'s (an escrow may name only its payee's projects)."""
    project = Project(owner_id=payee_id, name="Shop", currency=currency)
    session.add(project)
    await session.flush()
    return f"prj_{project.id}"


def offer(payee_id: str, amount: Any = 10_000, currency: str = "usd", **extra: Any) -> Any:
    return {"payee_id": payee_id, "amount": amount, "currency": currency, "reference": "job-1"} | (
        extra
    )


async def balance(session: AsyncSession, user_id: str | None, kind: AccountKind, cur: str) -> int:
    ref = (
        AccountRef.user(user_id, kind, cur)
        if user_id is not None
        else AccountRef.platform(kind, cur)
    )
    return await LedgerService(session).balance_of(ref)


async def fees(session: AsyncSession, currency: str) -> int:
    return await balance(session, None, AccountKind.platform_fees, currency)


async def written(session: AsyncSession) -> tuple[int, ...]:
    """Row counts of everything an escrow request could write."""
    counts = []
    for model in (Escrow, LedgerTransaction, LedgerPosting, Earning):
        counts.append(int(await session.scalar(select(func.count()).select_from(model)) or 0))
    return tuple(counts)
