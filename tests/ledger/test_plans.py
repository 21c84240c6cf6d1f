"""The ledger's posting statement keeps PostgreSQL's generic plan: its array
parameters are read through scalar subqueries (ledger/statements.py), so the plan made
without the arrays' values costs as much as one made for them, and after the first five
executions of the prepared statement the server stops planning it again. That generic
plan finds each account it names through an index, whatever the table's size."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import driver_connection
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


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


async def test_the_generic_plan_reads_each_account_through_an_index(
    session: AsyncSession,
) -> None:
    """The plan the server keeps is made without the keys' values: an index lookup per
    key, never a scan of every account of a kind (a user's account by its key, the
    platform's by the partial index of platform accounts)."""
    driver = await driver_connection(session)
    parameters = max(int(n) for n in re.findall(r"\$(\d+)", RAW_POST.sql))
    await driver.execute(f"PREPARE ledger_post_plan AS {RAW_POST.sql}")
    try:
        await driver.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        # NULLs: a generic plan is the same whatever the values.
        nulls = ", ".join(["NULL"] * parameters)
        explained = await driver.fetchval(
            f"EXPLAIN (FORMAT JSON) EXECUTE ledger_post_plan({nulls})"
        )
    finally:
        await driver.execute("DEALLOCATE ledger_post_plan")
    # The session's connection decodes json itself; a bare asyncpg one hands back text.
    document = json.loads(explained) if isinstance(explained, str) else explained
    plan = document[0]["Plan"]
    reads = [n for n in _plan_nodes(plan) if n.get("Relation Name") == "ledger_accounts"]
    assert {(n["Node Type"], n.get("Index Name")) for n in reads} == {
        ("Index Scan", "ledger_accounts_owner_user_id_kind_currency_key"),
        ("Index Scan", "ix_ledger_accounts_platform_kind_currency"),
    }
