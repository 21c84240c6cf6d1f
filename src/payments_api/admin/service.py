"""Admin actions. Each one is written to the audit log with the state before and after."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.admin.schemas import (
    AccountName,
    AdjustmentCreate,
    LedgerTransactionRead,
    PostingRead,
    WalletStatusRead,
)
from payments_api.audit.repository import AuditLogRepository
from payments_api.audit.wallet_freezes import set_wallet_frozen
from payments_api.kit.idempotency import IdempotencyKeyReused, fingerprint
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import StoredTransaction
from payments_api.users.errors import UserNotFound
from payments_api.users.models import User
from payments_api.users.repository import UserRepository


def transaction_read(transaction: StoredTransaction) -> LedgerTransactionRead:
    return LedgerTransactionRead(
        id=public_id("ltx", transaction.id),
        type=transaction.type,
        cause_type=transaction.cause_type,
        description=transaction.description,
        created_at=transaction.created_at,
        reverses_transaction_id=(
            public_id("ltx", transaction.reverses_transaction_id)
            if transaction.reverses_transaction_id
            else None
        ),
        postings=[
            PostingRead(
                account=AccountName(user_id=p.owner_user_id, kind=AccountKind(p.kind)),
                amount=p.amount,
                currency=p.currency,
            )
            for p in transaction.postings
        ],
    )


def _label(ref: ledger_service.AccountRef) -> str:
    owner = f"user:{ref.owner_user_id}" if ref.owner_user_id else "platform"
    return f"{owner}:{ref.kind.value}:{ref.currency}"


class AdminService:
    def __init__(self, session: AsyncSession, *, actor: User, request_id: str | None) -> None:
        self.session = session
        self.actor = actor
        self.request_id = request_id
        self.ledger = ledger_service.LedgerService(session)
        self.users = UserRepository(session)
        self.audit = AuditLogRepository(session)

    async def adjust(
        self, body: AdjustmentCreate, idempotency_key: str
    ) -> tuple[LedgerTransactionRead, bool]:
        """Post a manual balanced transaction; returns it and whether it was a replay."""
        cause_key = f"admin_adjustment:{self.actor.id}:{idempotency_key}"
        request_fingerprint = fingerprint(body.model_dump(mode="json"))
        existing = await self.ledger.transaction(cause_key)
        if existing is not None:
            if existing.metadata.get("fingerprint") != request_fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used for a different adjustment."
                )
            return transaction_read(existing), True

        refs = []
        for posting in body.postings:
            user_id = posting.account.user_id
            if user_id is not None and await self.users.get(user_id) is None:
                raise UserNotFound(f"No user {user_id!r}.", user_id=user_id)
            refs.append(ledger_service.AccountRef(posting.account.kind, body.currency, user_id))
        before = {_label(r): await self.ledger.balance_of(r) for r in refs}
        result = await self.ledger.post(
            ledger_service.NewTransaction(
                type="adjustment",
                cause_type=CauseType.admin_adjustment,
                cause_key=cause_key,
                description=body.reason,
                metadata={
                    "actor_id": self.actor.id,
                    "reason": body.reason,
                    "fingerprint": request_fingerprint,
                },
                postings=[
                    ledger_service.PostingSpec(ref, posting.amount)
                    for ref, posting in zip(refs, body.postings, strict=True)
                ],
            )
        )
        if result.replayed:  # a concurrent twin with the same key won the race
            if result.transaction.metadata.get("fingerprint") != request_fingerprint:
                raise IdempotencyKeyReused()
            return transaction_read(result.transaction), True
        after = {_label(r): await self.ledger.balance_of(r) for r in refs}
        await self.audit.record(
            actor_id=self.actor.id,
            action="ledger.adjustment",
            target_type="ledger_transaction",
            target_id=public_id("ltx", result.transaction.id),
            before={"balances": before},
            after={"balances": after},
            reason=body.reason,
            request_id=self.request_id,
        )
        return transaction_read(result.transaction), False

    async def set_frozen(
        self, user_id: str, *, frozen: bool, reason: str | None
    ) -> WalletStatusRead:
        """Freeze or unfreeze a wallet (withdrawals blocked). Repeating is a no-op."""
        user = await self.users.get(user_id, for_update=True)
        if user is None:
            raise UserNotFound(f"No user {user_id!r}.", user_id=user_id)
        if user.frozen != frozen:
            await set_wallet_frozen(
                self.session,
                user,
                frozen=frozen,
                frozen_reason=reason,
                actor_id=self.actor.id,
                reason=reason,
                request_id=self.request_id,
            )
        return WalletStatusRead(
            user_id=user.id, frozen=user.frozen, frozen_reason=user.frozen_reason
        )
