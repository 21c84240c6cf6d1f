"""What rides the ledger's posting statement: a staged outgoing event and riders
(``NewTransaction.event``, ``NewTransaction.riders``). Each is written exactly when
``post`` returns: with the postings, or on a replayed cause in a statement of its own;
never when the post is refused."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import Rider
from payments_api.events.outbox import stage
from payments_api.events.schemas import BalanceAlertRead
from payments_api.events.types import EventType
from payments_api.ledger.errors import InsufficientFunds
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from tests.factories import create_user, fund, ledger_invariants

SUBJECT = BalanceAlertRead(currency="usd", threshold=100, below=True, available=7)


def _marker(tag: str) -> Rider:
    """A rider that records it ran, with the ledger transaction's id (which it reads,
    as every rider does, from the carrier's ``posted_transaction``)."""
    return Rider(
        """
        marker AS (
            INSERT INTO events (type, change_key, user_ids, payload)
            SELECT 'test.rider', :marker_tag || ':' || CAST(posted_transaction.id AS text),
                   CAST('{}' AS varchar[]), CAST('{}' AS jsonb)
            FROM posted_transaction
            ON CONFLICT (change_key) DO NOTHING
        )
        """,
        {"marker_tag": tag},
    )


def _hold(user_id: str, amount: int, cause: str, change_key: str, rider: str) -> NewTransaction:
    return NewTransaction(
        type="escrow_hold",
        cause_type=CauseType.escrow,
        cause_key=cause,
        postings=[
            PostingSpec(AccountRef.user(user_id, AccountKind.available, "usd"), -amount),
            PostingSpec(AccountRef.user(user_id, AccountKind.escrow, "usd"), amount),
        ],
        event=stage(EventType.balance_low, SUBJECT, change_key=change_key, user_ids=[user_id]),
        riders=[_marker(rider)],
    )


async def _events(session: AsyncSession, prefix: str) -> list[tuple[str, str, dict[str, object]]]:
    rows = await session.execute(
        text("SELECT type, change_key, payload FROM events WHERE change_key LIKE :p ORDER BY id"),
        {"p": f"{prefix}%"},
    )
    return [(row.type, row.change_key, row.payload) for row in rows]


async def test_the_event_and_riders_are_written_with_the_postings(session: AsyncSession) -> None:
    user = await create_user(session)
    await fund(session, user.id, 1_000)
    run = uuid.uuid4().hex
    result = await LedgerService(session).post(
        _hold(user.id, 400, f"hold:{run}", f"{run}:event", f"{run}:rider")
    )
    assert not result.replayed
    # One statement: which of the two got the lower id is not specified.
    assert sorted(await _events(session, run), key=lambda event: event[1]) == [
        ("balance.low", f"{run}:event", SUBJECT.model_dump(mode="json")),
        ("test.rider", f"{run}:rider:{result.transaction.id}", {}),
    ]
    assert await ledger_invariants(session) == []


async def test_a_replayed_cause_still_writes_them_once(session: AsyncSession) -> None:
    user = await create_user(session)
    await fund(session, user.id, 1_000)
    run = uuid.uuid4().hex
    ledger = LedgerService(session)
    first = await ledger.post(_hold(user.id, 400, f"hold:{run}", f"{run}:a", f"{run}:ra"))
    again = await ledger.post(_hold(user.id, 400, f"hold:{run}", f"{run}:b", f"{run}:rb"))
    twice = await ledger.post(_hold(user.id, 400, f"hold:{run}", f"{run}:b", f"{run}:rb"))
    assert again.replayed
    assert twice.replayed
    txid = first.transaction.id
    assert sorted(key for _, key, _ in await _events(session, run)) == sorted(
        [f"{run}:a", f"{run}:ra:{txid}", f"{run}:b", f"{run}:rb:{txid}"]
    )
    assert (
        await LedgerService(session).balance_of(AccountRef.user(user.id, AccountKind.escrow, "usd"))
        == 400
    )


async def test_a_refused_post_writes_neither(session: AsyncSession) -> None:
    user = await create_user(session)
    await fund(session, user.id, 100)
    run = uuid.uuid4().hex
    with pytest.raises(InsufficientFunds):
        await LedgerService(session).post(
            _hold(user.id, 400, f"hold:{run}", f"{run}:event", f"{run}:rider")
        )
    assert await _events(session, run) == []
    assert await LedgerService(session).transaction(f"hold:{run}") is None
