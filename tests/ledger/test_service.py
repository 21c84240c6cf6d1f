"""LedgerService and the database rules behind it."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.errors import (
    AlreadyReversed,
    InsufficientFunds,
    InvalidPosting,
    UnbalancedTransaction,
)
from payments_api.ledger.kinds import PLATFORM_SHARDS, AccountKind, CauseType
from payments_api.ledger.models import LedgerPosting, LedgerTransaction
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from tests.factories import create_user, fund, ledger_invariants

AVAILABLE = AccountKind.available
ESCROW = AccountKind.escrow


def hold(user_id: str, amount: int, key: str, currency: str = "usd") -> NewTransaction:
    return NewTransaction(
        type="escrow_hold",
        cause_type=CauseType.escrow,
        cause_key=key,
        postings=[
            PostingSpec(AccountRef.user(user_id, AVAILABLE, currency), -amount),
            PostingSpec(AccountRef.user(user_id, ESCROW, currency), amount),
        ],
    )


async def _counts(session: AsyncSession) -> tuple[int, int]:
    transactions = await session.scalar(select(func.count()).select_from(LedgerTransaction))
    postings = await session.scalar(select(func.count()).select_from(LedgerPosting))
    return int(transactions or 0), int(postings or 0)


class TestPost:
    async def test_balanced_transaction_moves_money(self, session: AsyncSession) -> None:
        user = await create_user(session)
        ledger = LedgerService(session)
        await fund(session, user.id, 20_000)
        result = await ledger.post(hold(user.id, 10_500, "hold:1"))
        assert not result.replayed
        assert [p.amount for p in result.transaction.postings] == [-10_500, 10_500]
        assert await ledger.balance_of(AccountRef.user(user.id, AVAILABLE, "usd")) == 9_500
        assert await ledger.balance_of(AccountRef.user(user.id, ESCROW, "usd")) == 10_500
        assert await ledger_invariants(session) == []

    async def test_replayed_cause_changes_nothing(self, session: AsyncSession) -> None:
        user = await create_user(session)
        await fund(session, user.id, 5_000)
        ledger = LedgerService(session)
        first = await ledger.post(hold(user.id, 1_000, "hold:replay"))
        before = await _counts(session)
        second = await ledger.post(hold(user.id, 1_000, "hold:replay"))
        # even a different body under the same cause returns the first result
        third = await ledger.post(hold(user.id, 4_000, "hold:replay"))
        assert second.replayed
        assert third.replayed
        assert second.transaction.id == third.transaction.id == first.transaction.id
        assert await _counts(session) == before
        assert await ledger.balance_of(AccountRef.user(user.id, ESCROW, "usd")) == 1_000

    async def test_insufficient_funds_refused(self, session: AsyncSession) -> None:
        user = await create_user(session)
        await fund(session, user.id, 999)
        ledger = LedgerService(session)
        with pytest.raises(InsufficientFunds) as caught:
            async with session.begin_nested():
                await ledger.post(hold(user.id, 1_000, "hold:too-much"))
        assert caught.value.status == 402
        assert caught.value.extensions == {"currency": "usd", "balance": 999, "required": 1_000}
        assert await ledger.balance_of(AccountRef.user(user.id, AVAILABLE, "usd")) == 999

    @pytest.mark.parametrize(
        ("postings", "error"),
        [
            ([(AVAILABLE, 100)], UnbalancedTransaction),
            ([(AVAILABLE, 100), (ESCROW, -99)], UnbalancedTransaction),
            ([(AVAILABLE, 0), (ESCROW, 0)], InvalidPosting),
            ([(AccountKind.platform_fees, 100), (ESCROW, -100)], InvalidPosting),
        ],
    )
    async def test_invalid_transactions_write_nothing(
        self,
        session: AsyncSession,
        postings: list[tuple[AccountKind, int]],
        error: type[Exception],
    ) -> None:
        user = await create_user(session)
        before = await _counts(session)
        with pytest.raises(error):
            await LedgerService(session).post(
                NewTransaction(
                    type="test",
                    cause_type=CauseType.system,
                    cause_key="bad",
                    postings=[
                        PostingSpec(AccountRef.user(user.id, kind, "usd"), amount)
                        for kind, amount in postings
                    ],
                )
            )
        assert await _counts(session) == before

    async def test_mixed_currencies_must_each_balance(self, session: AsyncSession) -> None:
        user = await create_user(session)
        await fund(session, user.id, 1_000, "usd")
        with pytest.raises(UnbalancedTransaction):
            await LedgerService(session).post(
                NewTransaction(
                    type="test",
                    cause_type=CauseType.system,
                    cause_key="fx",
                    postings=[
                        PostingSpec(AccountRef.user(user.id, AVAILABLE, "usd"), -1_000),
                        PostingSpec(AccountRef.user(user.id, ESCROW, "eur"), 1_000),
                    ],
                )
            )

    async def test_platform_fee_account_is_sharded(self, session: AsyncSession) -> None:
        ledger = LedgerService(session)
        for i in range(5):
            user = await create_user(session)
            await fund(session, user.id, 1_000, "eur", kind=ESCROW)
            await ledger.post(
                NewTransaction(
                    type="fee",
                    cause_type=CauseType.escrow,
                    cause_key=f"fee:{i}",
                    postings=[
                        PostingSpec(AccountRef.user(user.id, ESCROW, "eur"), -200),
                        PostingSpec(AccountRef.platform(AccountKind.platform_fees, "eur"), 200),
                    ],
                )
            )
        fees = AccountRef.platform(AccountKind.platform_fees, "eur")
        assert await ledger.balance_of(fees) == 1_000
        shards = await session.scalar(
            text(
                "SELECT count(*) FROM ledger_balances b JOIN ledger_accounts a"
                " ON a.id = b.account_id WHERE a.kind = 'platform_fees' AND a.currency = 'eur'"
            )
        )
        assert shards == PLATFORM_SHARDS
        assert await ledger_invariants(session) == []


class TestReversal:
    async def test_reverse_once(self, session: AsyncSession) -> None:
        user = await create_user(session)
        await fund(session, user.id, 3_000)
        ledger = LedgerService(session)
        original = await ledger.post(hold(user.id, 1_000, "hold:rev"))
        reversal = await ledger.reverse(original.transaction.id, cause_key="rev:1")
        assert reversal.transaction.reverses_transaction_id == original.transaction.id
        assert await ledger.balance_of(AccountRef.user(user.id, AVAILABLE, "usd")) == 3_000
        again = await ledger.reverse(original.transaction.id, cause_key="rev:1")
        assert again.replayed
        with pytest.raises(AlreadyReversed):
            await ledger.reverse(original.transaction.id, cause_key="rev:2")
        assert await ledger.balance_of(AccountRef.user(user.id, AVAILABLE, "usd")) == 3_000
        assert await ledger_invariants(session) == []


class TestDatabaseBackstops:
    """The rules hold even for SQL that bypasses the service."""

    async def _expect_db_error(self, session: AsyncSession, sql: str, match: str) -> None:
        async def attempt() -> None:
            async with session.begin_nested():
                await session.execute(text(sql))
                # fire the deferred (commit-time) triggers now
                await session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))

        with pytest.raises(DBAPIError, match=match):
            await attempt()

    async def test_postings_and_transactions_are_append_only(self, session: AsyncSession) -> None:
        user = await create_user(session)
        await fund(session, user.id, 1_000)
        await self._expect_db_error(session, "UPDATE ledger_postings SET amount = 1", "append-only")
        await self._expect_db_error(session, "DELETE FROM ledger_postings", "append-only")
        await self._expect_db_error(
            session, "UPDATE ledger_transactions SET type = 'x'", "append-only"
        )
        await self._expect_db_error(session, "DELETE FROM ledger_transactions", "append-only")

    async def test_unbalanced_insert_fails_at_commit(self, session: AsyncSession) -> None:
        user = await create_user(session)
        await fund(session, user.id, 1_000)
        account_id = await session.scalar(
            text("SELECT id FROM ledger_accounts WHERE owner_user_id = :u"), {"u": user.id}
        )
        await self._expect_db_error(
            session,
            f"""
            WITH t AS (INSERT INTO ledger_transactions (type, cause_type, cause_key)
                       VALUES ('x', 'system', 'raw-unbalanced') RETURNING id)
            INSERT INTO ledger_postings (transaction_id, account_id, currency, amount)
            SELECT t.id, {account_id}, 'usd', 5 FROM t UNION ALL
            SELECT t.id, {account_id}, 'usd', 6 FROM t
            """,
            "does not balance",
        )
        await self._expect_db_error(
            session,
            "INSERT INTO ledger_transactions (type, cause_type, cause_key)"
            " VALUES ('x', 'system', 'raw-empty')",
            "fewer than two postings",
        )

    async def test_a_posting_added_after_an_early_check_is_checked_again(
        self, session: AsyncSession
    ) -> None:
        """A transaction's checks after the first skip the check it just passed
        (migration 0028): a posting inserted after an early check (SET CONSTRAINTS ALL
        IMMEDIATE) makes its transaction be verified again."""
        user = await create_user(session)
        await fund(session, user.id, 1_000)
        account_id = await session.scalar(
            text("SELECT id FROM ledger_accounts WHERE owner_user_id = :u"), {"u": user.id}
        )
        balanced = f"""
            WITH t AS (INSERT INTO ledger_transactions (type, cause_type, cause_key)
                       VALUES ('x', 'system', 'raw-late') RETURNING id)
            INSERT INTO ledger_postings (transaction_id, account_id, currency, amount)
            SELECT t.id, {account_id}, 'usd', 5 FROM t UNION ALL
            SELECT t.id, {account_id}, 'usd', -5 FROM t
            RETURNING transaction_id
            """
        checked_early = False

        async def attempt() -> None:
            nonlocal checked_early
            async with session.begin_nested():
                transaction_id = (await session.execute(text(balanced))).scalars().first()
                await session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
                checked_early = True  # balanced so far: the early check passed
                await session.execute(
                    text(
                        "INSERT INTO ledger_postings (transaction_id, account_id, currency,"
                        f" amount) VALUES ({transaction_id}, {account_id}, 'usd', 7)"
                    )
                )
                await session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))

        with pytest.raises(DBAPIError, match="does not balance"):
            await attempt()
        assert checked_early

    async def test_posting_currency_must_match_account(self, session: AsyncSession) -> None:
        user = await create_user(session)
        result = await fund(session, user.id, 1_000)
        account_id = result.transaction.postings[0].account_id
        await self._expect_db_error(
            session,
            f"""
            WITH t AS (INSERT INTO ledger_transactions (type, cause_type, cause_key)
                       VALUES ('x', 'system', 'raw-fx') RETURNING id)
            INSERT INTO ledger_postings (transaction_id, account_id, currency, amount)
            SELECT t.id, {account_id}, 'eur', 5 FROM t UNION ALL
            SELECT t.id, {account_id}, 'eur', -5 FROM t
            """,
            "ledger_postings_account_id_currency_fkey",
        )

    async def test_available_cannot_go_negative_outside_disputes(
        self, session: AsyncSession
    ) -> None:
        user = await create_user(session)
        result = await fund(session, user.id, 1_000)
        account_id = result.transaction.postings[0].account_id
        await self._expect_db_error(
            session,
            f"UPDATE ledger_balances SET balance = -1 WHERE account_id = {account_id}",
            "would go negative",
        )

    async def test_dispute_path_may_drive_available_negative(self, session: AsyncSession) -> None:
        user = await create_user(session)
        await fund(session, user.id, 1_000)
        ledger = LedgerService(session)
        dispute = NewTransaction(
            type="dispute",
            cause_type=CauseType.stripe_event,
            cause_key="stripe:evt_dispute",
            allow_negative_available=True,
            postings=[
                PostingSpec(AccountRef.user(user.id, AVAILABLE, "usd"), -2_500),
                PostingSpec(AccountRef.platform(AccountKind.disputes, "usd"), 2_500),
            ],
        )
        await ledger.post(dispute)
        assert await ledger.balance_of(AccountRef.user(user.id, AVAILABLE, "usd")) == -1_500
        # the permission ended with that posting: the next ordinary debit is refused
        with pytest.raises(InsufficientFunds):
            await ledger.post(hold(user.id, 1, "hold:after-dispute"))
        setting = await session.scalar(
            text("SELECT current_setting('payments.allow_negative_available', true)")
        )
        assert setting == "off"
