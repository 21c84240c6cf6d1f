"""Taking a completed job's settlement back (a refund of a job, paid by card or from the
wallet): one ``escrow_settlement_reversal`` transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.models import Escrow
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.take_back import post_taking_from_payee, take_back_postings


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
