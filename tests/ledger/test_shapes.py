"""``ledger.shapes``: the postings that ``move`` and ``split`` build, and what the ledger
makes of them."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.errors import UnbalancedTransaction
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.ledger.shapes import move, receive, split
from payments_api.ledger.stripe_fees import processing_fee, settled_fee
from payments_api.stripe.objects import ChargeWithFee, parse_object
from tests.factories import create_user, ledger_invariants
from tests.helpers import stripe_object

STRIPE = AccountRef.platform(AccountKind.stripe_balance, "usd")
FEES = AccountRef.platform(AccountKind.platform_fees, "usd")


def test_move_takes_from_one_and_gives_to_the_other() -> None:
    wallet = AccountRef.user("user_1", AccountKind.available, "usd")
    assert move(1000, out_of=STRIPE, into=wallet) == [
        PostingSpec(STRIPE, -1000),
        PostingSpec(wallet, 1000),
    ]


def test_receive_is_a_move_listed_arriving_side_first() -> None:
    wallet = AccountRef.user("user_1", AccountKind.available, "usd")
    assert receive(1000, into=wallet, out_of=STRIPE) == [
        PostingSpec(wallet, 1000),
        PostingSpec(STRIPE, -1000),
    ]
    assert receive(1000, into=wallet, out_of=STRIPE) == move(1000, out_of=STRIPE, into=wallet)[::-1]


def test_a_processing_fee_leaves_the_stripe_balance_once_per_balance_transaction() -> None:
    new = processing_fee(
        balance_transaction_id="txn_1",
        fee=59,
        currency="usd",
        description="Stripe fee",
        metadata={"charge": "ch_1"},
    )
    assert (new.type, new.cause_type, new.cause_key) == (
        "processing_fee",
        CauseType.stripe_event,
        "stripe:fee:txn_1",
    )
    assert list(new.postings) == [
        PostingSpec(STRIPE, 59),
        PostingSpec(AccountRef.platform(AccountKind.processing_fees, "usd"), -59),
    ]


def test_only_a_settled_charge_with_a_fee_has_a_fee_to_book() -> None:
    def fee_of(balance_transaction: object) -> tuple[str, int, str | None] | None:
        charge = {**stripe_object("charge"), "balance_transaction": balance_transaction}
        return settled_fee(parse_object(ChargeWithFee, charge).balance_transaction)

    assert fee_of({"id": "txn_1", "fee": 59, "currency": "eur"}) == ("txn_1", 59, "eur")
    assert fee_of({"id": "txn_1", "fee": 59}) == ("txn_1", 59, None)
    assert fee_of({"id": "txn_1", "fee": 0, "currency": "eur"}) is None
    assert fee_of("txn_1") is None  # not expanded: not settled yet
    assert fee_of(None) is None


def test_split_shares_the_total_and_leaves_out_zero_parts() -> None:
    escrow = AccountRef.user("user_1", AccountKind.escrow, "usd")
    payee = AccountRef.user("user_2", AccountKind.available, "usd")
    nothing = AccountRef.platform(AccountKind.sales, "usd")
    assert split(1000, out_of=escrow, into=[(payee, 900), (FEES, 100), (nothing, 0)]) == [
        PostingSpec(escrow, -1000),
        PostingSpec(payee, 900),
        PostingSpec(FEES, 100),
    ]


def test_a_split_whose_parts_do_not_add_up_is_refused() -> None:
    escrow = AccountRef.user("user_1", AccountKind.escrow, "usd")
    with pytest.raises(UnbalancedTransaction):
        split(1000, out_of=escrow, into=[(FEES, 999)])


async def test_the_ledger_posts_a_split_as_given(session: AsyncSession) -> None:
    customer = await create_user(session)
    payee = await create_user(session, roles=["payee"])
    ledger = LedgerService(session)
    wallet = AccountRef.user(customer.id, AccountKind.available, "usd")
    await ledger.post(
        NewTransaction(
            type="topup",
            cause_type=CauseType.system,
            cause_key="shapes:topup",
            postings=move(1000, out_of=STRIPE, into=wallet),
        )
    )
    payee_wallet = AccountRef.user(payee.id, AccountKind.available, "usd")
    await ledger.post(
        NewTransaction(
            type="spend",
            cause_type=CauseType.system,
            cause_key="shapes:split",
            postings=split(1000, out_of=wallet, into=[(payee_wallet, 870), (FEES, 130)]),
        )
    )
    assert await ledger.balance_of(wallet) == 0
    assert await ledger.balance_of(payee_wallet) == 870
    assert await ledger_invariants(session) == []
