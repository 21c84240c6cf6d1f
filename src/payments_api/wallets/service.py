"""A ``service`` debits a user's wallet: available -> the platform's sales, once per
Idempotency-Key, never below zero, refused while the wallet is frozen."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.kit.amounts import check_limits
from payments_api.kit.idempotency import IdempotencyKeyReused, fingerprint
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.shapes import move
from payments_api.settings import Settings
from payments_api.users.errors import UserNotFound
from payments_api.users.repository import UserRepository
from payments_api.wallets.schemas import WalletDebitCreate, WalletDebitRead


class WalletService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.ledger = ledger_service.LedgerService(session)

    def _check_limits(self, amount: int, currency: str) -> None:
        check_limits(self.settings, "debit", amount, currency, what="Wallet debits")

    async def debit(
        self, user_id: str, body: WalletDebitCreate, *, actor_id: str, idempotency_key: str
    ) -> WalletDebitRead:
        self._check_limits(body.amount, body.currency)
        if await UserRepository(self.session).get(user_id) is None:
            raise UserNotFound(f"No user {user_id!r}.")
        cause_key = f"wallet_debit:{actor_id}:{idempotency_key}"
        request_fingerprint = fingerprint({**body.model_dump(mode="json"), "user": user_id})
        available = ledger_service.AccountRef.user(user_id, AccountKind.available, body.currency)
        metadata: dict[str, Any] = {
            "user_id": user_id,
            "description": body.description,
            "reference": body.reference,
            "fingerprint": request_fingerprint,
            "actor": actor_id,
        }
        result = await self.ledger.post(
            ledger_service.NewTransaction(
                type="wallet_debit",
                cause_type=CauseType.system,
                cause_key=cause_key,
                description=body.description,
                metadata=metadata,
                postings=move(
                    body.amount,
                    out_of=available,
                    into=ledger_service.AccountRef.platform(AccountKind.sales, body.currency),
                ),
                # Spending the wallet is the owner's money leaving: a freeze stops it. A
                # short balance is the ledger's 402 insufficient_funds, nothing taken.
                initiated_by=user_id,
            )
        )
        transaction = result.transaction
        if result.replayed and transaction.metadata.get("fingerprint") != request_fingerprint:
            raise IdempotencyKeyReused("This Idempotency-Key was used for another debit.")
        debit = WalletDebitRead(
            id=public_id("ltx", transaction.id),
            user_id=user_id,
            amount=body.amount,
            currency=body.currency,
            description=body.description,
            reference=body.reference,
            available_after=await self.ledger.balance_of(available),
            created_at=transaction.created_at,
        )
        if not result.replayed:
            await emit(
                self.session,
                EventType.wallet_debited,
                debit,
                change_key=f"wallet_debit:{transaction.id}",
                user_ids=[user_id],
            )
        return debit
