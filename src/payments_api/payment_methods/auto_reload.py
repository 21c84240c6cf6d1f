"""Auto-reload: one off-session top-up per downward crossing of a threshold.

The ledger moves each affected auto-reload to the side of its threshold the balance is
now on, in the statement that applies a posting's balances (:data:`CROSS_CTE`, beside
the low-balance alerts), and calls :func:`crossed` with the ones that moved; a move
downwards writes a pending off-session top-up order for the default card and queues
``auto_reload.charge`` for it, in the same transaction. Postings to one account are
serialised by the ledger's balance lock, so concurrent debits see the crossing exactly
once; the order's key (``auto_reload:<transaction id>``) makes a replay write nothing.
The job calls Stripe with no transaction open (``charge``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.jobs.queue import enqueue
from payments_api.payment_methods.repository import PaymentMethodRepository

log = logging.getLogger(__name__)

CHARGE_JOB = "auto_reload.charge"

_CROSS = text(
    """
    UPDATE auto_reloads AS r
    SET below = (v.available < r.threshold), updated_at = now()
    FROM unnest((SELECT CAST(:users AS varchar[])), (SELECT CAST(:currencies AS varchar[])),
                (SELECT CAST(:amounts AS bigint[]))) AS v(user_id, currency, available)
    WHERE r.user_id = v.user_id AND r.currency = v.currency AND r.enabled
      AND r.below IS DISTINCT FROM (v.available < r.threshold)
    RETURNING r.user_id, r.currency, r.amount, r.below
    """
)

# :data:`_CROSS` as a common table expression named ``reloads``, over the common table
# expression ``observed`` (user_id, currency, available: the available balances a
# posting left): the ledger runs it inside the statement that applies a posting's
# balances, which computes ``observed``.
CROSS_CTE = """
    reloads AS (
        UPDATE auto_reloads AS r
        SET below = (v.available < r.threshold), updated_at = now()
        FROM observed AS v
        WHERE r.user_id = v.user_id AND r.currency = v.currency AND r.enabled
          AND r.below IS DISTINCT FROM (v.available < r.threshold)
        RETURNING r.user_id, r.currency, r.amount, r.below
    )
"""


@dataclass(frozen=True, slots=True)
class CrossedReload:
    user_id: str
    currency: str
    amount: int
    below: bool


# The pending top-up (the orders domain's table, written here in SQL so the ledger, which
# calls this module, never imports a pay-in domain).
_START = text(
    """
    INSERT INTO orders (user_id, purpose, channel, status, amount, currency,
                        idempotency_key, request_fingerprint, reference,
                        payment_method_id, off_session)
    VALUES (:user_id, 'topup', 'payment_intent', 'pending', :amount, :currency,
            :key, 'auto_reload', CAST('{"auto_reload": true}' AS jsonb), :card, true)
    ON CONFLICT (user_id, idempotency_key) DO NOTHING
    RETURNING id
    """
)


async def observe(
    session: AsyncSession, available: list[tuple[str, str, int]], transaction_id: int
) -> list[int]:
    """``available``: (user id, currency, available after the posting). The ids of the
    top-up orders this posting started. For a caller that has not moved the
    auto-reloads itself (one statement of its own)."""
    rows = (
        await session.execute(
            _CROSS,
            {
                "users": [user for user, _, _ in available],
                "currencies": [currency for _, currency, _ in available],
                "amounts": [amount for _, _, amount in available],
            },
        )
    ).all()
    return await crossed(
        session,
        [CrossedReload(row.user_id, row.currency, row.amount, row.below) for row in rows],
        transaction_id,
    )


async def crossed(
    session: AsyncSession, reloads: Iterable[CrossedReload], transaction_id: int
) -> list[int]:
    """Start a top-up for each auto-reload that moved below its threshold; the ids of
    the orders started."""
    started: list[int] = []
    for row in reloads:
        if not row.below:
            continue  # back above: re-armed for the next fall
        card = await PaymentMethodRepository(session).default_for(row.user_id)
        if card is None:
            log.info("auto-reload crossed with no default card", extra={"user": row.user_id})
            continue
        order_id = await session.scalar(
            _START,
            {
                "user_id": row.user_id,
                "amount": row.amount,
                "currency": row.currency,
                "key": f"auto_reload:{transaction_id}:{row.currency}",
                "card": card.id,
            },
        )
        if order_id is not None:
            await enqueue(session, CHARGE_JOB, str(order_id).encode())
            started.append(int(order_id))
    return started
