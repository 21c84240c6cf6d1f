from __future__ import annotations

from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.balance.schemas import (
    BalanceRead,
    CurrencyBalance,
    LedgerEntryList,
    LedgerEntryRead,
)
from payments_api.kit.pagination import parse_cursor, public_id
from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.repository import LedgerRepository
from payments_api.money import normalize_currency
from payments_api.orders.repository import OrderRepository
from payments_api.users.models import User

ENTRY_PREFIX = "le"
TRANSACTION_PREFIX = "ltx"


class BalanceService:
    """Read side of the ledger for one user."""

    def __init__(self, session: AsyncSession) -> None:
        self.repository = LedgerRepository(session)
        self.orders = OrderRepository(session)

    async def balance(self, user: User) -> BalanceRead:
        amounts: dict[str, dict[str, int]] = defaultdict(dict)
        for currency, kind, balance in await self.repository.user_balances(user.id):
            amounts[currency][kind] = balance
        for currency, pending in (await self.orders.pending_amounts(user.id)).items():
            amounts[currency]["pending"] = pending
        balances = [
            CurrencyBalance(
                currency=currency,
                available=kinds.get(AccountKind.available, 0),
                escrow=kinds.get(AccountKind.escrow, 0),
                withdrawing=kinds.get(AccountKind.withdrawing, 0),
                pending=kinds.get("pending", 0),  # top-ups awaiting Stripe's confirmation
            )
            for currency, kinds in sorted(amounts.items())
            if any(kinds.values())
        ]
        return BalanceRead(balances=balances, frozen=user.frozen)

    async def entries(
        self,
        user: User,
        *,
        limit: int,
        starting_after: str | None,
        currency: str | None,
        transaction_type: str | None,
    ) -> LedgerEntryList:
        rows = await self.repository.user_entries(
            user.id,
            limit=limit + 1,
            before_id=parse_cursor(ENTRY_PREFIX, starting_after),
            currency=normalize_currency(currency) if currency else None,
            transaction_type=transaction_type,
        )
        data = [
            LedgerEntryRead(
                id=public_id(ENTRY_PREFIX, row.id),
                transaction_id=public_id(TRANSACTION_PREFIX, row.transaction_id),
                account=AccountKind(row.kind),
                amount=row.amount,
                currency=row.currency,
                type=row.type,
                description=row.description,
                created_at=row.created_at,
            )
            for row in rows[:limit]
        ]
        return LedgerEntryList(data=data, has_more=len(rows) > limit)
