"""The ledger transactions of a refund (of an order or of a subscription invoice), built
in one place: every one names the refund in its metadata the same way, and its cause is
Stripe's refund (``stripe:refund:{re}``: what reconciliation matches to Stripe's refund,
and what makes a second application impossible) or one of the refund's own steps
(``<table>:<id>:<step>``: its hold, its release, the credit it takes back, ...)."""

from __future__ import annotations

from typing import Any

from payments_api.ledger import service as ledger_service
from payments_api.ledger import shapes
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.orders.refund_models import Refund
from payments_api.refunds.invoice_models import InvoiceRefund


def user_account(user_id: str, kind: AccountKind, currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.user(user_id, kind, currency)


def platform_account(kind: AccountKind, currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.platform(kind, currency)


def refund_names(refund: Refund | InvoiceRefund) -> tuple[str, dict[str, Any]]:
    """The refund's table (its own causes' prefix) and the ids its transactions carry."""
    if isinstance(refund, InvoiceRefund):
        return "invoice_refund", {"invoice_refund_id": refund.id}
    return "refund", {"refund_id": refund.id, "order_id": refund.order_id}


def refund_transaction(
    refund: Refund | InvoiceRefund,
    type: str,
    postings: list[ledger_service.PostingSpec],
    *,
    description: str,
    step: str | None = None,
    allow_negative_available: bool = False,
    **metadata: Any,
) -> ledger_service.NewTransaction:
    """A transaction of ``refund``: Stripe's refund, or with a ``step`` one of the
    refund's own; ``metadata`` is what it says besides the refund's ids."""
    table, names = refund_names(refund)
    stripe_id = refund.stripe_refund_id
    if step is None:
        cause_type, cause_key = CauseType.stripe_event, f"stripe:refund:{stripe_id}"
        metadata = {"refund": stripe_id, **metadata}
    else:
        cause_type, cause_key = CauseType.system, f"{table}:{refund.id}:{step}"
    return ledger_service.NewTransaction(
        type=type,
        cause_type=cause_type,
        cause_key=cause_key,
        description=description,
        metadata={**names, **metadata},
        postings=postings,
        allow_negative_available=allow_negative_available,
    )


def to_the_card(
    refund: Refund | InvoiceRefund, debits: list[ledger_service.PostingSpec]
) -> list[ledger_service.PostingSpec]:
    """Stripe refunded: the money leaves the platform's Stripe balance, taken from
    ``debits``."""
    card = platform_account(AccountKind.stripe_balance, refund.currency)
    return [*debits, ledger_service.PostingSpec(card, refund.amount)]


def wallet_move(
    refund: Refund | InvoiceRefund, amount: int, *, out_of: AccountKind, into: AccountKind
) -> list[ledger_service.PostingSpec]:
    """``amount`` between two of the refunded customer's balances."""
    user, currency = refund.user_id, refund.currency
    return shapes.move(
        amount, out_of=user_account(user, out_of, currency), into=user_account(user, into, currency)
    )


def hold_transaction(
    refund: Refund | InvoiceRefund,
    amount: int,
    *,
    description: str,
    allow_negative_available: bool = False,
) -> ledger_service.NewTransaction:
    """The refund's hold: ``available -> withdrawing`` (the customer can neither spend
    nor withdraw money that is being refunded), until Stripe answers."""
    held = wallet_move(refund, amount, out_of=AccountKind.available, into=AccountKind.withdrawing)
    return refund_transaction(
        refund,
        "refund_hold",
        held,
        step="hold",
        description=description,
        allow_negative_available=allow_negative_available,
    )
