"""The ledger's posting statement keeps PostgreSQL's generic plan: its array
parameters are read through scalar subqueries (ledger/statements.py), so the plan made
without the arrays' values costs as much as one made for them, and after the first five
executions of the prepared statement the server stops planning it again."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.post_statement import RAW_POST
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from tests.factories import create_user, fund


async def _plans(session: AsyncSession) -> tuple[int, int]:
    """(custom, generic) plans of the posting statement on the session's connection."""
    row = (
        await session.execute(
            text(
                "SELECT custom_plans, generic_plans FROM pg_prepared_statements"
                " WHERE statement = :sql"
            ),
            {"sql": RAW_POST.sql},
        )
    ).one_or_none()
    return (0, 0) if row is None else (int(row.custom_plans), int(row.generic_plans))


async def test_the_posting_statement_keeps_its_generic_plan(session: AsyncSession) -> None:
    user = await create_user(session)
    await fund(session, user.id, 10_000)
    ledger = LedgerService(session)
    run = uuid.uuid4().hex
    before = 0
    for step in range(9):
        if step == 1:  # the accounts exist now: one execution per post from here
            before = sum(await _plans(session))
        result = await ledger.post(
            NewTransaction(
                type="escrow_hold",
                cause_type=CauseType.escrow,
                cause_key=f"plan:{run}:{step}",
                postings=[
                    PostingSpec(AccountRef.user(user.id, AccountKind.available, "usd"), -100),
                    PostingSpec(AccountRef.user(user.id, AccountKind.escrow, "usd"), 100),
                ],
            )
        )
        assert not result.replayed
    # Five custom plans while PostgreSQL compares, then the generic one, kept.
    assert await _plans(session) == (5, before + 8 - 5)
