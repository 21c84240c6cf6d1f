"""Property-based: random operation sequences keep every ledger invariant."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.errors import InsufficientFunds
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.models import LedgerPosting
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.money import basis_points_of
from tests.factories import create_user, ledger_invariants

AVAILABLE, ESCROW = AccountKind.available, AccountKind.escrow
USERS = 3


@dataclass(frozen=True)
class Op:
    name: str
    user: int
    other: int
    amount: int


ops = st.builds(
    Op,
    name=st.sampled_from(["fund", "hold", "release", "settle", "replay"]),
    user=st.integers(0, USERS - 1),
    other=st.integers(0, USERS - 1),
    amount=st.integers(1, 5_000),
)


def _transaction(op: Op, users: list[str], key: str) -> NewTransaction:
    payer, payee = users[op.user], users[op.other]
    fee = basis_points_of(op.amount, 2_000)
    postings = {
        "fund": [
            PostingSpec(AccountRef.user(payer, AVAILABLE, "usd"), op.amount),
            PostingSpec(AccountRef.platform(AccountKind.stripe_balance, "usd"), -op.amount),
        ],
        "hold": [
            PostingSpec(AccountRef.user(payer, AVAILABLE, "usd"), -op.amount),
            PostingSpec(AccountRef.user(payer, ESCROW, "usd"), op.amount),
        ],
        "release": [
            PostingSpec(AccountRef.user(payer, ESCROW, "usd"), -op.amount),
            PostingSpec(AccountRef.user(payer, AVAILABLE, "usd"), op.amount),
        ],
        "settle": [
            PostingSpec(AccountRef.user(payer, ESCROW, "usd"), -op.amount),
            PostingSpec(AccountRef.user(payee, AVAILABLE, "usd"), op.amount - fee),
            PostingSpec(AccountRef.platform(AccountKind.platform_fees, "usd"), fee),
        ],
    }[op.name]
    return NewTransaction(
        type=op.name,
        cause_type=CauseType.system,
        cause_key=key,
        postings=[p for p in postings if p.amount != 0],
    )


async def _user_balances(ledger: LedgerService, users: list[str]) -> dict[tuple[str, str], int]:
    return {
        (u, k): await ledger.balance_of(AccountRef.user(u, k, "usd"))
        for u in users
        for k in (AVAILABLE, ESCROW)
    }


class TestLedgerProperties:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(sequence=st.lists(ops, min_size=1, max_size=20))
    async def test_random_sequences_keep_invariants(
        self, session: AsyncSession, sequence: list[Op]
    ) -> None:
        example = await session.begin_nested()  # each example starts from the same state
        try:
            users = [(await create_user(session)).id for _ in range(USERS)]
            ledger = LedgerService(session)
            model: dict[tuple[str, str], int] = defaultdict(int)
            applied: list[str] = []
            for index, op in enumerate(sequence):
                if op.name == "replay":
                    if not applied:
                        continue
                    key = applied[op.amount % len(applied)]
                    transaction = NewTransaction(
                        type="replay",
                        cause_type=CauseType.system,
                        cause_key=key,
                        postings=_transaction(Op("fund", 0, 0, 1), users, key).postings,
                    )
                else:
                    key = f"prop:{uuid.uuid4().hex}:{index}"
                    transaction = _transaction(op, users, key)
                before_balances = await _user_balances(ledger, users)
                before_postings = await session.scalar(
                    select(func.count()).select_from(LedgerPosting)
                )
                try:
                    async with session.begin_nested():
                        result = await ledger.post(transaction)
                except InsufficientFunds:
                    # a rejected operation changes nothing
                    assert await _user_balances(ledger, users) == before_balances
                    assert (
                        await session.scalar(select(func.count()).select_from(LedgerPosting))
                        == before_postings
                    )
                    continue
                if op.name == "replay":
                    # a replayed cause changes nothing
                    assert result.replayed
                    assert await _user_balances(ledger, users) == before_balances
                    continue
                applied.append(key)
                for posting in transaction.postings:
                    if posting.account.owner_user_id is not None:
                        model[(posting.account.owner_user_id, posting.account.kind)] += (
                            posting.amount
                        )
                balances = await _user_balances(ledger, users)
                assert all(value >= 0 for value in balances.values())
                assert balances == {k: model[k] for k in balances}
            assert await ledger_invariants(session) == []
        finally:
            await example.rollback()
