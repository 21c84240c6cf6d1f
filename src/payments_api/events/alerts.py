"""``balance.low``: once per downward crossing of a user's threshold.

The ledger moves every affected alert to the side of its threshold the balance is now
on, in the statement that applies a posting's balances
(``events.repository.CROSS_BALANCE_ALERTS_CTE``), and calls :func:`crossed` with the
alerts that moved; only a move downwards emits. A balance that comes back to the
threshold re-arms the alert, so the next fall emits again. Concurrent postings to one
account are serialised by the ledger's balance lock, so each crossing is seen by
exactly one of them.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.outbox import emit
from payments_api.events.repository import CrossedAlert, EventRepository
from payments_api.events.schemas import BalanceAlertRead
from payments_api.events.types import EventType


async def observe(
    session: AsyncSession, available: list[tuple[str, str, int]], transaction_id: int
) -> None:
    """``available``: (user id, currency, available balance after the posting). For a
    caller that has not moved the alerts itself (one statement of its own)."""
    await crossed(
        session, await EventRepository(session).cross_balance_alerts(available), transaction_id
    )


async def crossed(
    session: AsyncSession, alerts: Iterable[CrossedAlert], transaction_id: int
) -> None:
    """Emit ``balance.low`` for each alert that moved below its threshold."""
    for alert in alerts:
        if not alert.below:
            continue
        await emit(
            session,
            EventType.balance_low,
            BalanceAlertRead(
                currency=alert.currency,
                threshold=alert.threshold,
                below=True,
                available=alert.available,
            ),
            change_key=f"balance_alert:{alert.user_id}:{alert.currency}:{transaction_id}",
            user_ids=[alert.user_id],
        )
