"""The shapes most ledger transactions take, so a call site says what the money does.

``move(total, out_of=a, into=b)`` is "``total`` leaves ``a`` and arrives in ``b``";
``split(total, out_of=a, into=[(b, x), (c, y)])`` is "``total`` leaves ``a`` and is
shared between ``b`` and ``c``" (a settlement: the payee's share and the platform fee).
Both only build postings: ``LedgerService.post`` still validates and writes them.

The side money arrives on gets the positive posting, as everywhere in this ledger: a
top-up is ``move(1000, out_of=stripe_balance, into=<user's available>)`` (+1000 to what
the user is owed, -1000 to the sign-inverted mirror of the Stripe balance; see
``ledger.kinds``).
"""

from __future__ import annotations

from collections.abc import Sequence

from payments_api.ledger.errors import UnbalancedTransaction
from payments_api.ledger.service import AccountRef, PostingSpec


def move(total: int, *, out_of: AccountRef, into: AccountRef) -> list[PostingSpec]:
    """``total`` minor units leave ``out_of`` (a negative posting) into ``into``."""
    return [PostingSpec(out_of, -total), PostingSpec(into, total)]


def split(
    total: int, *, out_of: AccountRef, into: Sequence[tuple[AccountRef, int]]
) -> list[PostingSpec]:
    """``total`` leaves ``out_of`` and is shared between ``into``'s accounts.

    Parts of zero are left out (a fee of nothing is no posting); the parts must add up to
    ``total``, exactly.
    """
    parts = [(account, amount) for account, amount in into if amount != 0]
    if sum(amount for _, amount in parts) != total:
        raise UnbalancedTransaction(
            "The parts of a split must add up to its total.",
            imbalance={out_of.currency: sum(a for _, a in parts) - total},
        )
    return [PostingSpec(out_of, -total), *(PostingSpec(a, amount) for a, amount in parts)]


def receive(total: int, *, into: AccountRef, out_of: AccountRef) -> list[PostingSpec]:
    """:func:`move`, with the postings listed the arriving side first: the order the
    pay-ins and fees have always been written in, which the admin's read of a ledger
    transaction shows (its postings in the order they were posted)."""
    return [PostingSpec(into, total), PostingSpec(out_of, -total)]
