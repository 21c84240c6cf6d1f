"""``post_taking_from_payee``: what the payee's available balance does not hold is
covered by the platform, and a balance that changed between the read and the post (a
concurrent spend or withdrawal) is read again rather than failing the refund."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.ledger.take_back import post_taking_from_payee
from tests.factories import create_user, fund, ledger_invariants


def taking(payee: str, share: int, key: str) -> Callable[[int], NewTransaction]:
    def make(covered: int) -> NewTransaction:
        postings = [
            PostingSpec(AccountRef.platform(AccountKind.stripe_balance, "usd"), share),
        ]
        if share - covered:
            postings.append(
                PostingSpec(AccountRef.user(payee, AccountKind.available, "usd"), covered - share)
            )
        if covered:
            postings.append(
                PostingSpec(AccountRef.platform(AccountKind.adjustments, "usd"), -covered)
            )
        return NewTransaction(
            type="test_take", cause_type=CauseType.system, cause_key=key, postings=postings
        )

    return make


async def test_the_platform_covers_what_the_payee_lacks(session: AsyncSession) -> None:
    payee = (await create_user(session, roles=["payee"])).id
    await fund(session, payee, 300)
    covered, available = await post_taking_from_payee(
        session,
        AccountRef.user(payee, AccountKind.available, "usd"),
        1_000,
        taking(payee, 1_000, f"test:{uuid.uuid4().hex}"),
    )
    assert (covered, available) == (700, 300)
    ledger = LedgerService(session)
    assert await ledger.balance_of(AccountRef.user(payee, AccountKind.available, "usd")) == 0
    assert await ledger_invariants(session) == []


async def test_a_stale_read_is_read_again(
    session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    payee = (await create_user(session, roles=["payee"])).id
    await fund(session, payee, 300)
    real = LedgerService.balance_of
    reads: list[int] = []

    async def stale_first(self: LedgerService, ref: AccountRef) -> int:
        value = await real(self, ref)
        reads.append(value)
        # the first read sees the balance before a spend of 200 that commits meanwhile
        return value + 200 if len(reads) == 1 else value

    monkeypatch.setattr(LedgerService, "balance_of", stale_first)
    key = f"test:{uuid.uuid4().hex}"
    covered, available = await post_taking_from_payee(
        session,
        AccountRef.user(payee, AccountKind.available, "usd"),
        400,
        taking(payee, 400, key),
    )
    monkeypatch.setattr(LedgerService, "balance_of", real)
    # first try took 400 of a believed 500 -> refused by the ledger; then 300 and 100 cover
    assert reads == [300, 300]
    assert (covered, available) == (100, 300)
    posted = await LedgerService(session).transaction(key)
    assert posted is not None
    assert sorted((p.kind, p.amount) for p in posted.postings) == [
        ("adjustments", -100),
        ("available", -300),
        ("stripe_balance", 400),
    ]
    assert await ledger_invariants(session) == []
