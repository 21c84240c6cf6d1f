"""Factories: ``create_<model>(session, **overrides)``."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import (
    AccountRef,
    LedgerService,
    NewTransaction,
    PostingSpec,
    PostResult,
)
from payments_api.users.models import User


async def create_user(session: AsyncSession, **overrides: Any) -> User:
    values: dict[str, Any] = {"id": f"user_{uuid.uuid4().hex[:12]}", "roles": ["customer"]}
    values.update(overrides)
    user = User(**values)
    session.add(user)
    await session.flush()
    return user


async def fund(
    session: AsyncSession,
    user_id: str,
    amount: int,
    currency: str = "usd",
    *,
    kind: AccountKind = AccountKind.available,
    cause_key: str | None = None,
) -> PostResult:
    """Credit a user's account from the platform's Stripe balance (a confirmed pay-in)."""
    return await LedgerService(session).post(
        NewTransaction(
            type="topup",
            cause_type=CauseType.system,
            cause_key=cause_key or f"test-fund:{uuid.uuid4().hex}",
            postings=[
                PostingSpec(AccountRef.user(user_id, kind, currency), amount),
                PostingSpec(AccountRef.platform(AccountKind.stripe_balance, currency), -amount),
            ],
        )
    )


async def ledger_invariants(session: AsyncSession) -> list[str]:
    """Every rule of the ledger checked with SQL; returns what is broken (empty = ok)."""
    broken: list[str] = []
    unbalanced = await session.scalar(
        text(
            "SELECT count(*) FROM (SELECT transaction_id, currency FROM ledger_postings"
            " GROUP BY 1, 2 HAVING sum(amount) <> 0) x"
        )
    )
    if unbalanced:
        broken.append(f"{unbalanced} unbalanced transactions")
    drift = await session.scalar(
        text(
            """
            SELECT count(*) FROM ledger_accounts a
            WHERE (SELECT coalesce(sum(balance), 0) FROM ledger_balances b
                   WHERE b.account_id = a.id)
               <> (SELECT coalesce(sum(amount), 0) FROM ledger_postings p
                   WHERE p.account_id = a.id)
            """
        )
    )
    if drift:
        broken.append(f"{drift} accounts whose cached balance differs from their postings")
    negative = await session.scalar(
        text(
            "SELECT count(*) FROM ledger_balances WHERE NOT may_go_negative AND balance < 0"
            " AND kind <> 'available'"
        )
    )
    if negative:
        broken.append(f"{negative} escrow/withdrawing balances below zero")
    return broken


async def emitted(session: AsyncSession, user_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The outgoing events (type, payload) that concern ``user_id``, oldest first."""
    rows = await session.execute(
        text("SELECT type, payload FROM events WHERE :user = ANY(user_ids) ORDER BY id"),
        {"user": user_id},
    )
    return [(row.type, row.payload) for row in rows]
