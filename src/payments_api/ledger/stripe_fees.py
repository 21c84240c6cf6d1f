"""Stripe's processing fee of a settled charge, booked once per balance transaction:
+F to ``stripe_balance`` (less money at Stripe: the mirror is sign-inverted) and -F to
``processing_fees`` (a cost reads negative as it grows; see ``ledger.kinds``). Shared
by card pay-ins and subscription invoices, which differ only in what they say about
the charge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, NewTransaction
from payments_api.ledger.shapes import receive
from payments_api.stripe.objects import FeeTransaction


def settled_fee(balance_transaction: FeeTransaction | None) -> tuple[str, int, str | None] | None:
    """``(id, fee, currency)`` of a charge's expanded ``balance_transaction``; None while
    the charge is not settled (not expanded) or took no fee: reconciliation sees those
    later."""
    if balance_transaction is None or not balance_transaction.fee:
        return None
    return (
        balance_transaction.id,
        balance_transaction.fee,
        balance_transaction.currency or None,
    )


def processing_fee(
    *,
    balance_transaction_id: str,
    fee: int,
    currency: str,
    description: str,
    metadata: Mapping[str, Any],
) -> NewTransaction:
    """The ``processing_fee`` transaction of one balance transaction (cause key
    ``stripe:fee:{id}``, so a second word on the same charge books nothing)."""
    return NewTransaction(
        type="processing_fee",
        cause_type=CauseType.stripe_event,
        cause_key=f"stripe:fee:{balance_transaction_id}",
        description=description,
        metadata=metadata,
        postings=receive(
            fee,
            into=AccountRef.platform(AccountKind.stripe_balance, currency),
            out_of=AccountRef.platform(AccountKind.processing_fees, currency),
        ),
    )
