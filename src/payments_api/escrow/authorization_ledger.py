"""A manual-capture escrow's card authorization, shown in the ledger as a memo.

Money held at the customer's card is not the platform's and not the customer's to
spend, but the ledger still shows it, apart from captured money:

- the authorization (``payment_intent.amount_capturable_updated``) posts
  ``move(A, out_of=card_authorizations, into=<customer's authorized>)``, cause
  ``escrow_authorization:{pi}``;
- when it ends -- captured (in full or in part: Stripe releases the rest at once),
  released at our request, or expired -- that transaction is reversed exactly, once
  (``reverses_transaction_id``, cause ``escrow_authorization:{pi}:end``), with what was
  captured and released in its metadata. Captured money then enters the ledger through
  the escrow's normal funding (``stripe_balance -> escrow``), in the same database
  transaction.

``authorized``/``card_authorizations`` only ever post against each other, so
``available``, ``escrow`` and ``stripe_balance`` never include authorized money. Both
steps run with the escrow row locked (``FOR UPDATE``), and their cause keys make a
repeated or concurrent event a replay.
"""

from __future__ import annotations

from payments_api.escrow.models import Escrow
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.shapes import move

ESCROW_PREFIX = "esc"
HOLD_TYPE = "escrow_authorization"
END_TYPES = {
    "captured": "escrow_authorization_captured",
    "released": "escrow_authorization_released",
    "expired": "escrow_authorization_expired",
}


def hold_key(payment_intent_id: str) -> str:
    return f"escrow_authorization:{payment_intent_id}"


def end_key(payment_intent_id: str) -> str:
    return f"escrow_authorization:{payment_intent_id}:end"


def _accounts(escrow: Escrow) -> tuple[ledger_service.AccountRef, ledger_service.AccountRef]:
    return (
        ledger_service.AccountRef.user(escrow.customer_id, AccountKind.authorized, escrow.currency),
        ledger_service.AccountRef.platform(AccountKind.card_authorizations, escrow.currency),
    )


async def record_hold(
    ledger: ledger_service.LedgerService, escrow: Escrow, payment_intent_id: str, amount: int
) -> ledger_service.StoredTransaction:
    """The card holds ``amount`` for ``escrow``: posted once per PaymentIntent."""
    authorized, card_authorizations = _accounts(escrow)
    result = await ledger.post(
        ledger_service.NewTransaction(
            type=HOLD_TYPE,
            cause_type=CauseType.stripe_event,
            cause_key=hold_key(payment_intent_id),
            description=(f"Card authorization for escrow {public_id(ESCROW_PREFIX, escrow.id)}"),
            metadata={"escrow_id": escrow.id, "payment_intent_id": payment_intent_id},
            postings=move(amount, out_of=card_authorizations, into=authorized),
        )
    )
    return result.transaction


async def end_hold(
    ledger: ledger_service.LedgerService,
    escrow: Escrow,
    payment_intent_id: str,
    *,
    outcome: str,
    captured: int = 0,
) -> ledger_service.StoredTransaction | None:
    """The authorization of ``payment_intent_id`` is over (``outcome``: captured,
    released or expired): its memo is reversed in full, once. None when no
    authorization was ever posted for it (captured before its authorization event)."""
    hold = await ledger.transaction(hold_key(payment_intent_id))
    if hold is None:
        return None
    held = next(p.amount for p in hold.postings if p.kind == AccountKind.authorized.value)
    authorized, card_authorizations = _accounts(escrow)
    result = await ledger.post(
        ledger_service.NewTransaction(
            type=END_TYPES[outcome],
            cause_type=CauseType.stripe_event,
            cause_key=end_key(payment_intent_id),
            description=(
                f"Card authorization {outcome} for escrow {public_id(ESCROW_PREFIX, escrow.id)}"
            ),
            metadata={
                "escrow_id": escrow.id,
                "payment_intent_id": payment_intent_id,
                "captured": min(captured, held),
                "released": held - min(captured, held),
            },
            reverses_transaction_id=hold.id,
            postings=move(held, out_of=authorized, into=card_authorizations),
        )
    )
    return result.transaction
