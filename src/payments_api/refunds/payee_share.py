"""Taking a refund's payee share back from the payee's available balance, the platform
covering what the payee no longer holds (shared by the refunds of direct payments,
card-paid and wallet-paid jobs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger import service as ledger_service
from payments_api.ledger.errors import InsufficientFunds
from payments_api.ledger.kinds import AccountKind, CauseType

if TYPE_CHECKING:
    from payments_api.escrow.models import Escrow


async def post_taking_from_payee(
    session: AsyncSession,
    payee: ledger_service.AccountRef,
    share: int,
    make: Callable[[int], ledger_service.NewTransaction],
) -> tuple[int, int]:
    """Post ``make(covered)``, a transaction taking ``share - covered`` from the payee's
    available balance, where ``covered`` is what that balance does not hold (the
    platform covers it). A payee spending between the read and the post (the ledger
    refuses it, ``InsufficientFunds``, inside a savepoint) is read again and retried.
    Returns ``(covered, payee_available)``."""
    ledger = ledger_service.LedgerService(session)
    attempts = 5
    for attempt in range(attempts):
        available = await ledger.balance_of(payee)
        covered = max(0, share - max(0, available))
        try:
            async with session.begin_nested():
                await ledger.post(make(covered))
        except InsufficientFunds:
            if attempt == attempts - 1:
                raise
            continue
        return covered, available
    raise AssertionError("unreachable")  # pragma: no cover


def take_back_postings(
    payee: ledger_service.AccountRef, payee_share: int, fee_share: int, covered: int
) -> list[ledger_service.PostingSpec]:
    """The postings that take a refund's shares back: ``payee_share - covered`` from the
    payee's available balance, ``covered`` from the platform's ``adjustments`` (what the
    payee no longer holds), ``fee_share`` from the platform's fees. The caller adds
    where the refund goes (the customer's wallet or the refund's hold)."""
    currency = payee.currency
    postings = []
    if payee_share - covered:
        postings.append(ledger_service.PostingSpec(payee, covered - payee_share))
    if covered:
        adjustments = ledger_service.AccountRef.platform(AccountKind.adjustments, currency)
        postings.append(ledger_service.PostingSpec(adjustments, -covered))
    if fee_share:
        fees = ledger_service.AccountRef.platform(AccountKind.platform_fees, currency)
        postings.append(ledger_service.PostingSpec(fees, -fee_share))
    return postings


async def reverse_escrow_settlement(
    session: AsyncSession,
    escrow: Escrow,
    *,
    to: ledger_service.AccountRef,
    amount: int,
    payee_share: int,
    fee_share: int,
    cause_key: str,
    description: str,
    metadata: dict[str, Any],
) -> tuple[int, int]:
    """Take a completed job's settlement back in one ``escrow_settlement_reversal``
    transaction: ``amount`` to ``to`` (the customer's wallet, or a card refund's hold),
    the payee's share from the payee (the platform covering what they no longer hold)
    and the fee's share from the platform's fees.

    Returns ``(covered, payee_available)``."""
    payee_wallet = ledger_service.AccountRef.user(
        escrow.payee_id, AccountKind.available, to.currency
    )

    def reversal(covered: int) -> ledger_service.NewTransaction:
        return ledger_service.NewTransaction(
            type="escrow_settlement_reversal",
            cause_type=CauseType.system,
            cause_key=cause_key,
            description=description,
            metadata={
                **metadata,
                "escrow_id": escrow.id,
                "payee_id": escrow.payee_id,
                "payee_share": payee_share,
                "fee_share": fee_share,
                "platform_covered": covered,
            },
            postings=[
                ledger_service.PostingSpec(to, amount),
                *take_back_postings(payee_wallet, payee_share, fee_share, covered),
            ],
        )

    covered, payee_available = await post_taking_from_payee(
        session, payee_wallet, payee_share, reversal
    )
    escrow.payee_reversed_amount += payee_share
    return covered, payee_available
