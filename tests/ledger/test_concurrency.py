"""Concurrency on the real database: separate connections, real commits.

These tests commit, so they use fresh users and a currency of their own and measure
platform balances as deltas.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.ledger.errors import InsufficientFunds
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import (
    AccountRef,
    LedgerService,
    NewTransaction,
    PostingSpec,
    PostResult,
)
from tests.factories import create_user, fund, ledger_invariants

T = TypeVar("T")
AVAILABLE, ESCROW = AccountKind.available, AccountKind.escrow


@pytest.fixture
def committed(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def _in_txn(
    sessions: async_sessionmaker[AsyncSession], work: Callable[[LedgerService], Awaitable[T]]
) -> T:
    async with sessions.begin() as session:
        return await work(LedgerService(session))


async def _users(
    sessions: async_sessionmaker[AsyncSession],
    count: int,
    currency: str,
    amount: int,
    kind: AccountKind = AVAILABLE,
) -> list[str]:
    async with sessions.begin() as session:
        ids = []
        for _ in range(count):
            user = await create_user(session)
            if amount:
                await fund(session, user.id, amount, currency, kind=kind)
            ids.append(user.id)
        return ids


async def _balance(sessions: async_sessionmaker[AsyncSession], ref: AccountRef) -> int:
    return await _in_txn(sessions, lambda ledger: ledger.balance_of(ref))


class TestConcurrentLedger:
    async def test_fifty_debits_of_a_wallet_that_affords_ten(
        self, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        [user] = await _users(committed, 1, "dkk", 10_000)
        run = uuid.uuid4().hex

        async def debit(i: int) -> str:
            try:
                await _in_txn(
                    committed,
                    lambda ledger: ledger.post(
                        NewTransaction(
                            type="escrow_hold",
                            cause_type=CauseType.escrow,
                            cause_key=f"debit:{run}:{i}",
                            postings=[
                                PostingSpec(AccountRef.user(user, AVAILABLE, "dkk"), -1_000),
                                PostingSpec(AccountRef.user(user, ESCROW, "dkk"), 1_000),
                            ],
                        )
                    ),
                )
                return "ok"
            except InsufficientFunds:
                return "insufficient_funds"

        outcomes = await asyncio.gather(*(debit(i) for i in range(50)))
        assert outcomes.count("ok") == 10
        assert outcomes.count("insufficient_funds") == 40
        assert await _balance(committed, AccountRef.user(user, AVAILABLE, "dkk")) == 0
        assert await _balance(committed, AccountRef.user(user, ESCROW, "dkk")) == 10_000

    async def test_no_lost_update_on_one_wallet(
        self, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        [user] = await _users(committed, 1, "dkk", 0)
        await asyncio.gather(
            *(
                _in_txn(committed, lambda ledger: fund(ledger.session, user, 7, "dkk"))
                for _ in range(60)
            )
        )
        assert await _balance(committed, AccountRef.user(user, AVAILABLE, "dkk")) == 420

    async def test_hundred_settlements_all_credit_the_fee_account(
        self, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        payers = await _users(committed, 100, "sek", 1_000, kind=ESCROW)
        payees = await _users(committed, 100, "sek", 0)
        fees = AccountRef.platform(AccountKind.platform_fees, "sek")
        fees_before = await _balance(committed, fees)
        run = uuid.uuid4().hex

        def settle(payer: str, payee: str) -> Awaitable[object]:
            return _in_txn(
                committed,
                lambda ledger: ledger.post(
                    NewTransaction(
                        type="settlement",
                        cause_type=CauseType.escrow,
                        cause_key=f"settle:{run}:{payer}",
                        postings=[
                            PostingSpec(AccountRef.user(payer, ESCROW, "sek"), -1_000),
                            PostingSpec(AccountRef.user(payee, AVAILABLE, "sek"), 800),
                            PostingSpec(fees, 200),
                        ],
                    )
                ),
            )

        results = await asyncio.gather(
            *(settle(a, b) for a, b in zip(payers, payees, strict=True)),
            return_exceptions=True,
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert await _balance(committed, fees) - fees_before == 100 * 200
        for payee in payees:
            assert await _balance(committed, AccountRef.user(payee, AVAILABLE, "sek")) == 800

    async def test_opposite_lock_orders_never_deadlock(
        self, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        a, b = await _users(committed, 2, "nok", 100_000)
        run = uuid.uuid4().hex

        def transfer(i: int, source: str, target: str) -> Awaitable[object]:
            return _in_txn(
                committed,
                lambda ledger: ledger.post(
                    NewTransaction(
                        type="transfer",
                        cause_type=CauseType.system,
                        cause_key=f"swap:{run}:{i}",
                        postings=[
                            PostingSpec(AccountRef.user(target, AVAILABLE, "nok"), 10),
                            PostingSpec(AccountRef.user(source, AVAILABLE, "nok"), -10),
                        ],
                    )
                ),
            )

        results = await asyncio.gather(
            *(transfer(i, a, b) if i % 2 else transfer(i, b, a) for i in range(60)),
            return_exceptions=True,
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        total = await _balance(committed, AccountRef.user(a, AVAILABLE, "nok")) + await _balance(
            committed, AccountRef.user(b, AVAILABLE, "nok")
        )
        assert total == 200_000

    async def test_concurrent_replays_apply_once(
        self, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        [user] = await _users(committed, 1, "nok", 0)
        key = f"stripe:evt_{uuid.uuid4().hex}"
        results = await asyncio.gather(
            *(
                _in_txn(
                    committed, lambda ledger: fund(ledger.session, user, 500, "nok", cause_key=key)
                )
                for _ in range(20)
            )
        )
        assert sum(not r.replayed for r in results) == 1
        assert len({r.transaction.id for r in results}) == 1
        assert await _balance(committed, AccountRef.user(user, AVAILABLE, "nok")) == 500

    async def test_twins_debiting_all_the_funds_post_once_and_replay_the_rest(
        self, committed: async_sessionmaker[AsyncSession]
    ) -> None:
        """Twins (one cause key) of a debit the wallet affords once: the funds check
        runs in the posting's statement, before its insert; a twin that waited there
        for the balance lock finds the balance gone, and is still answered with the
        replay (the cause's transaction), not ``InsufficientFunds``."""
        [user] = await _users(committed, 1, "nok", 500)
        key = f"hold:{uuid.uuid4().hex}"

        def hold(ledger: LedgerService) -> Awaitable[PostResult]:
            return ledger.post(
                NewTransaction(
                    type="escrow_hold",
                    cause_type=CauseType.escrow,
                    cause_key=key,
                    postings=[
                        PostingSpec(AccountRef.user(user, AVAILABLE, "nok"), -500),
                        PostingSpec(AccountRef.user(user, ESCROW, "nok"), 500),
                    ],
                )
            )

        results = await asyncio.gather(*(_in_txn(committed, hold) for _ in range(12)))
        assert sum(not r.replayed for r in results) == 1
        assert len({r.transaction.id for r in results}) == 1
        assert await _balance(committed, AccountRef.user(user, AVAILABLE, "nok")) == 0
        assert await _balance(committed, AccountRef.user(user, ESCROW, "nok")) == 500


@pytest.fixture(autouse=True)
async def _ledger_invariants_hold_after_each_test(
    committed: async_sessionmaker[AsyncSession],
) -> AsyncIterator[None]:
    """Checked after every test of this module, whatever order they run in (a separate
    last test only checked something when the others happened to run first)."""
    yield
    async with committed() as session:
        assert await ledger_invariants(session) == []
