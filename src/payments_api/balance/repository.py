"""The balance read: one statement, so a balance costs one round trip."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.db import RawStatement, read_connection

# The caller's user row and their money in one statement: the user row is needed anyway
# (first-sight provisioning, the frozen flag), and every extra statement was a round
# trip and a share of the request's CPU (bench/RESULTS.md, scenario 1). No row: the
# user was never seen. "pending" is wallet pay-ins started at Stripe and not confirmed.
SELECT_BALANCE_SNAPSHOT = text(
    """
    WITH money AS (
        SELECT a.currency, a.kind, sum(b.balance)::bigint AS amount
        FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
        WHERE a.owner_user_id = :user_id
        GROUP BY a.currency, a.kind
        UNION ALL
        SELECT o.currency, 'pending', sum(o.amount)::bigint
        FROM orders o
        WHERE o.user_id = :user_id AND o.status IN ('pending', 'requires_action')
          AND o.purpose = 'topup'
          AND (o.stripe_checkout_session_id IS NOT NULL
               OR o.stripe_payment_intent_id IS NOT NULL)
        GROUP BY o.currency
    )
    SELECT u.roles, u.email, u.frozen, m.currency, m.kind, m.amount
    FROM users u LEFT JOIN money m ON true
    WHERE u.id = :user_id
    """
)
RAW_SELECT_BALANCE_SNAPSHOT = RawStatement.of(SELECT_BALANCE_SNAPSHOT)


@dataclass(frozen=True, slots=True)
class BalanceSnapshot:
    roles: list[str]
    email: str | None
    frozen: bool
    amounts: list[tuple[str, str, int]]
    """(currency, kind or ``pending``, amount) for every account and pending total."""


class BalanceRepository:
    """Reads on a pooled connection of their own, with no ORM session (``read_connection``)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def snapshot(self, user_id: str) -> BalanceSnapshot | None:
        """The user's row and balances; None when the user row does not exist."""
        # A single statement, so it is its own consistent snapshot: no transaction.
        async with read_connection(self.sessionmaker) as connection:
            rows = await connection.fetch(
                RAW_SELECT_BALANCE_SNAPSHOT.sql,
                *RAW_SELECT_BALANCE_SNAPSHOT.args({"user_id": user_id}),
            )
        if not rows:
            return None
        first = rows[0]
        return BalanceSnapshot(
            roles=list(first["roles"]),
            email=first["email"],
            frozen=first["frozen"],
            amounts=[
                (row["currency"], row["kind"], row["amount"])
                for row in rows
                if row["currency"] is not None
            ],
        )
