"""A ledger shape: taking a refund's payee share back from the payee's available
balance, the platform covering what the payee no longer holds (shared by the refunds of
direct payments, card-paid and wallet-paid jobs)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger import service as ledger_service
from payments_api.ledger.errors import InsufficientFunds
from payments_api.ledger.kinds import AccountKind


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
