from __future__ import annotations

from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.auth import Principal
from payments_api.balance.repository import BalanceRepository
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
from payments_api.users.models import User
from payments_api.users.repository import UserRepository, matches_principal

ENTRY_PREFIX = "le"
TRANSACTION_PREFIX = "ltx"


class BalanceReader:
    """The caller's balances, read on a pooled connection with no ORM session: the
    hottest read of the API (bench/readpath.py). A session is opened only to provision a
    user seen for the first time."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self.balances = BalanceRepository(sessionmaker)

    async def balance(self, principal: Principal) -> BalanceRead:
        """The caller's balances per currency, read in one statement with their user row.

        The user row stands in for ``CurrentUser``: when it is missing (first sight) or
        the token's roles or email changed, the user is provisioned as on every other
        route (committed at once), and the read runs again.
        """
        snapshot = await self.balances.snapshot(principal.sub)
        if snapshot is None or not matches_principal(snapshot.roles, snapshot.email, principal):
            async with self.sessionmaker.begin() as session:
                await UserRepository(session).upsert_from_principal(principal)
            snapshot = await self.balances.snapshot(principal.sub)
            if snapshot is None:  # pragma: no cover - the upsert just wrote the row
                raise RuntimeError(f"user {principal.sub} vanished after provisioning")
        amounts: dict[str, dict[str, int]] = defaultdict(dict)
        for currency, kind, amount in snapshot.amounts:
            amounts[currency][kind] = amount
        balances = [
            CurrencyBalance(
                currency=currency,
                available=kinds.get(AccountKind.available, 0),
                escrow=kinds.get(AccountKind.escrow, 0),
                withdrawing=kinds.get(AccountKind.withdrawing, 0),
                refunding=kinds.get(AccountKind.refunding, 0),
                pending=kinds.get("pending", 0),  # top-ups awaiting Stripe's confirmation
                authorized=kinds.get(AccountKind.authorized, 0),
            )
            for currency, kinds in sorted(amounts.items())
            if any(kinds.values())
        ]
        return BalanceRead(balances=balances, frozen=snapshot.frozen)


class BalanceService:
    """Read side of the ledger for one user."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = LedgerRepository(session)

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
