"""The ledger entries a dispute makes in a customer's wallet.

Stripe's withdrawal is the platform's; what the customer still holds of the disputed
money (a top-up, the plan credit of a subscription invoice) is taken out of their
available balance into the platform's ``disputes`` account, and given back if the
dispute is won. Both are caused by the dispute's Stripe events, keyed on the dispute
(``dispute:{dp}:debit``, ``dispute:{dp}:credit``), so a replayed event posts nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from payments_api.disputes.models import Dispute
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.shapes import move


def _wallet(user_id: str, currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.user(user_id, AccountKind.available, currency)


def _disputes(currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.platform(AccountKind.disputes, currency)


@dataclass(frozen=True, slots=True)
class WalletDebit:
    """What a dispute takes out of a customer's wallet (a disputed top-up, the plan
    credit of a disputed invoice): ``metadata`` says what was disputed."""

    user_id: str
    amount: int
    description: str
    metadata: Mapping[str, Any]


def wallet_debit(
    dispute: Dispute, debit: WalletDebit, currency: str
) -> ledger_service.NewTransaction:
    """``debit`` out of the wallet into ``disputes``. It may drive the wallet below zero
    (``allow_negative_available``): the disputed money may be spent already."""
    dp = dispute.stripe_dispute_id
    wallet = _wallet(debit.user_id, currency)
    return ledger_service.NewTransaction(
        type="dispute_debit",
        cause_type=CauseType.stripe_event,
        cause_key=f"dispute:{dp}:debit",
        description=debit.description,
        metadata={"dispute_id": dispute.id, "dispute": dp, **debit.metadata},
        allow_negative_available=True,
        postings=move(debit.amount, out_of=wallet, into=_disputes(currency)),
    )


def wallet_credit(
    dispute: Dispute, *, user_id: str, amount: int, currency: str
) -> ledger_service.NewTransaction:
    """The dispute won: what :func:`wallet_debit` took, back into the wallet."""
    dp = dispute.stripe_dispute_id
    return ledger_service.NewTransaction(
        type="dispute_credit",
        cause_type=CauseType.stripe_event,
        cause_key=f"dispute:{dp}:credit",
        description="Card dispute won: money back to the wallet",
        metadata={"dispute_id": dispute.id, "dispute": dp},
        postings=move(amount, out_of=_disputes(currency), into=_wallet(user_id, currency)),
    )
