"""LedgerService: the only writer of the ledger.

``post`` runs inside the caller's database transaction. It validates the postings
(>= 2, non-zero, sum zero per currency, kinds fit owners), then sends one statement
(``post_statement.py``) that in order:
1. refuses a frozen initiator (``WalletFrozen``);
2. finds a cause already applied: it returns the stored transaction and writes nothing;
3. finds the accounts (missing ones: created here in sorted order, and the statement
   sent again);
4. locks the single-row balances in (account id, shard) order;
5. refuses a user balance going below zero (``InsufficientFunds`` with the balance)
   before writing anything;
6. inserts the transaction row with ``ON CONFLICT (cause_key) DO NOTHING`` (a concurrent
   twin blocks on the unique index until the first commits, then writes nothing: the
   replay; a twin that waited at 4 and then finds the balance gone is a replay too),
   takes a free shard of each hot platform account with SKIP LOCKED (settlements of
   different users never queue on ``platform_fees``, lock cycles cannot form), applies
   the deltas and inserts the postings, with the change's alerts, event and riders.

PostgreSQL triggers re-check balance, append-only and non-negativity at the bottom.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncpg.exceptions import UniqueViolationError
from prometheus_client import Counter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import Rider
from payments_api.events import alerts as balance_alerts
from payments_api.events import outbox
from payments_api.events.outbox import StagedEvent
from payments_api.kit.clock import utcnow
from payments_api.ledger.errors import (
    AlreadyReversed,
    InsufficientFunds,
    InvalidPosting,
    TransactionNotFound,
    UnbalancedTransaction,
    WalletFrozen,
)
from payments_api.ledger.kinds import PLATFORM_KINDS, USER_KINDS, AccountKind, CauseType
from payments_api.ledger.repository import AccountRow, LedgerRepository, Posted, StoredPosting
from payments_api.ledger.repository import (
    StoredTransaction as StoredTransaction,  # what post() returns, for the ledger's callers
)
from payments_api.money import MAX_MINOR_AMOUNT, CurrencyError, normalize_currency
from payments_api.payment_methods import auto_reload

LEDGER_TRANSACTIONS = Counter(
    "payments_ledger_transactions_total", "Ledger transactions written, by type", ["type"]
)


@dataclass(frozen=True, slots=True)
class AccountRef:
    """Names an account: a user's (user id, kind, currency) or a platform kind."""

    kind: AccountKind
    currency: str
    owner_user_id: str | None = None

    @classmethod
    def user(cls, user_id: str, kind: AccountKind, currency: str) -> AccountRef:
        return cls(kind=kind, currency=currency, owner_user_id=user_id)

    @classmethod
    def platform(cls, kind: AccountKind, currency: str) -> AccountRef:
        return cls(kind=kind, currency=currency)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.owner_user_id or "", self.kind.value, self.currency)


@dataclass(frozen=True, slots=True)
class PostingSpec:
    account: AccountRef
    amount: int


@dataclass(frozen=True, slots=True)
class NewTransaction:
    type: str
    cause_type: CauseType
    cause_key: str
    postings: Sequence[PostingSpec]
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    reverses_transaction_id: int | None = None
    allow_negative_available: bool = False
    """Only the dispute path may drive a user's available below zero."""
    riders: Sequence[Rider] = ()
    """Writes of the change this transaction is part of (the payee's earnings entry of a
    settlement), run in the statement that inserts the postings, which passes them the
    transaction's id as ``transaction_id``; on a replay of the cause key, in a
    statement of their own. Either way they ran exactly when ``post`` returns."""
    event: StagedEvent | None = None
    """The outgoing event of the change this transaction is part of (``outbox.stage``):
    written with the postings, in their statement, when the transaction is posted; on
    a replay of the cause key, in a statement of its own (a no-op when its change key
    was recorded). Either way it is written exactly when ``post`` returns."""
    initiated_by: str | None = None
    """The user whose own request this is (a withdrawal, an escrow they fund or
    complete, a spend). If that user's wallet is frozen, a transaction that takes money
    out of any of their accounts is refused (``WalletFrozen``): the freeze rule lives
    here, once, for every flow. Money coming in, other users' actions and admin actions
    (``None``) are not affected."""


@dataclass(frozen=True, slots=True)
class PostResult:
    transaction: StoredTransaction
    replayed: bool
    """True when the cause key had been applied before: nothing was written."""


def _validate(new: NewTransaction) -> list[PostingSpec]:
    if not new.cause_key or len(new.cause_key) > 255:
        raise InvalidPosting("A cause key of 1 to 255 characters is required.")
    if not new.type or len(new.type) > 48:
        raise InvalidPosting("A transaction type of 1 to 48 characters is required.")
    if len(new.postings) < 2:
        raise UnbalancedTransaction("A transaction needs at least two postings.")
    normalized: list[PostingSpec] = []
    sums: dict[str, int] = defaultdict(int)
    for posting in new.postings:
        amount = posting.amount
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise InvalidPosting("Posting amounts are integers of minor units.")
        if amount == 0 or abs(amount) > MAX_MINOR_AMOUNT:
            raise InvalidPosting("Posting amounts are non-zero and within limits.")
        try:
            currency = normalize_currency(posting.account.currency)
        except CurrencyError as exc:
            raise InvalidPosting(str(exc)) from exc
        kind = AccountKind(posting.account.kind)
        owner = posting.account.owner_user_id
        if owner is not None and kind not in USER_KINDS:
            raise InvalidPosting(f"{kind} is a platform account kind, not a user's.")
        if owner is None and kind not in PLATFORM_KINDS:
            raise InvalidPosting(f"{kind} accounts belong to a user.")
        sums[currency] += amount
        normalized.append(PostingSpec(AccountRef(kind, currency, owner), amount))
    unbalanced = {c: s for c, s in sums.items() if s != 0}
    if unbalanced:
        raise UnbalancedTransaction(
            "The postings must sum to zero per currency.", imbalance=unbalanced
        )
    return normalized


class LedgerService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = LedgerRepository(session)

    async def transaction(self, cause_key: str) -> StoredTransaction | None:
        """The transaction a cause key posted, if any (for callers' own replays)."""
        return await self.repository.get_transaction(cause_key=cause_key)

    async def post(self, new: NewTransaction) -> PostResult:
        """Apply a balanced transaction once per cause key, in the caller's transaction."""
        postings = _validate(new)
        self.repository.bind(await self.repository.driver())
        try:
            return await self._post(new, postings)
        finally:
            self.repository.bind(None)

    async def _post(self, new: NewTransaction, postings: list[PostingSpec]) -> PostResult:
        takes_from_initiator = new.initiated_by is not None and any(
            p.amount < 0 and p.account.owner_user_id == new.initiated_by for p in postings
        )
        keys = sorted({p.account.key for p in postings})
        net: dict[tuple[str, str, str], int] = defaultdict(int)
        for posting in postings:
            net[posting.account.key] += posting.amount
        metadata = json.dumps(dict(new.metadata), sort_keys=True, default=str)
        if new.allow_negative_available:
            await self.repository.allow_negative_available(True)
        # One round trip (ledger/post_statement.py): the initiator's frozen flag (FOR
        # SHARE: a concurrent freeze waits for this transaction, and this one waits for
        # a freeze in flight and then sees it), the replay check, the accounts, the
        # balances' locks in (account id, shard) order, the funds check, then, only when
        # it passed, the transaction row, the shard picks, the balances' update, the
        # postings, the thresholds the new available balances crossed, the change's
        # event and the riders. Refused or replayed, it wrote nothing.
        for attempt in range(2):
            done = await self.repository.post_in_one_statement(
                {
                    "type": new.type,
                    "cause_type": new.cause_type.value,
                    "cause_key": new.cause_key,
                    "description": new.description,
                    "metadata": metadata,
                    "reverses_transaction_id": new.reverses_transaction_id,
                },
                keys,
                [net[key] for key in keys],
                [(*p.account.key, p.amount) for p in postings],
                frozen_user=str(new.initiated_by) if takes_from_initiator else None,
                allow_negative_available=new.allow_negative_available,
                event=new.event,
                riders=new.riders,
            )
            if done.state != "missing" or attempt:
                break
            # First posting to some account: create it (in sorted order), then again.
            await self._resolve_accounts(keys, await self.repository.find_accounts(keys))
        if new.allow_negative_available:
            await self.repository.allow_negative_available(False)
        if done.state == "frozen":
            raise WalletFrozen(
                "The wallet is frozen: money cannot leave it by the owner's own action."
            )
        if done.state == "short" and done.shortfall is not None:
            # A twin with the same cause key may have committed while this statement
            # waited for its balance locks (its snapshot did not see it): a replay.
            if await self.repository.get_transaction(cause_key=new.cause_key) is None:
                raise InsufficientFunds(
                    f"The {done.shortfall.kind} balance is too low for this operation.",
                    currency=done.shortfall.currency,
                    balance=done.shortfall.balance,
                    required=-done.shortfall.delta,
                )
        elif done.state != "replayed" and done.state != "short":
            if done.state != "posted" or done.transaction_id is None:  # pragma: no cover
                raise RuntimeError(f"ledger posting of {new.cause_key} ended {done.state}")
            return await self._posted(new, postings, done)
        existing = await self.repository.get_transaction(cause_key=new.cause_key)
        if existing is None:  # pragma: no cover - the conflict guarantees the row
            raise RuntimeError(f"cause {new.cause_key} conflicted but is missing")
        if new.riders:
            await self.repository.run_riders(new.riders, existing.id)
        if new.event is not None:
            await outbox.emit_staged(self.session, new.event)
        return PostResult(existing, replayed=True)

    async def _posted(
        self, new: NewTransaction, postings: list[PostingSpec], done: Posted
    ) -> PostResult:
        """The result of a posting the statement wrote, and what its crossings start."""
        transaction_id = int(done.transaction_id or 0)
        if done.alerts:
            await balance_alerts.crossed(self.session, done.alerts, transaction_id)
        if done.reloads:
            await auto_reload.crossed(self.session, done.reloads, transaction_id)
        if done.event is not None:
            await outbox.written(self.session, *done.event)
        stored = StoredTransaction(
            id=transaction_id,
            type=new.type,
            cause_type=new.cause_type.value,
            cause_key=new.cause_key,
            description=new.description,
            metadata=json.loads(json.dumps(dict(new.metadata), default=str)),
            reverses_transaction_id=new.reverses_transaction_id,
            created_at=done.created_at or utcnow(),
            postings=tuple(
                StoredPosting(
                    id=posting_id,
                    account_id=account_id,
                    owner_user_id=p.account.owner_user_id,
                    kind=p.account.kind.value,
                    currency=p.account.currency,
                    amount=p.amount,
                )
                for (posting_id, account_id), p in zip(done.postings, postings, strict=True)
            ),
        )
        LEDGER_TRANSACTIONS.labels(new.type).inc()
        return PostResult(stored, replayed=False)

    @staticmethod
    def _may_go_negative(account: AccountRow, new: NewTransaction) -> bool:
        if account.may_go_negative:
            return True
        return new.allow_negative_available and account.kind == AccountKind.available

    async def _resolve_accounts(
        self,
        keys: list[tuple[str, str, str]],
        found: dict[tuple[str, str, str], AccountRow],
    ) -> dict[tuple[str, str, str], AccountRow]:
        """``found`` (the accounts of ``keys`` that exist) completed with the missing
        ones, created here."""
        missing = [k for k in keys if k not in found]
        if missing:
            # Created in sorted order so concurrent first postings cannot deadlock on
            # the unique index.
            for owner, kind, currency in missing:
                await self.repository.create_account(owner, kind, currency)
            found.update(await self.repository.find_accounts(missing))
        return found

    async def reverse(
        self,
        transaction_id: int,
        *,
        cause_key: str,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        allow_negative_available: bool = False,
    ) -> PostResult:
        """Post the exact opposite of a transaction; each can be reversed only once."""
        original = await self.repository.get_transaction(transaction_id=transaction_id)
        if original is None:
            raise TransactionNotFound()
        replay = await self.repository.get_transaction(cause_key=cause_key)
        if replay is not None and replay.reverses_transaction_id == transaction_id:
            return PostResult(replay, replayed=True)
        new = NewTransaction(
            type="reversal",
            cause_type=CauseType.reversal,
            cause_key=cause_key,
            description=description or f"Reversal of ledger transaction {transaction_id}",
            metadata=metadata or {},
            reverses_transaction_id=transaction_id,
            allow_negative_available=allow_negative_available,
            postings=[
                PostingSpec(AccountRef(AccountKind(p.kind), p.currency, p.owner_user_id), -p.amount)
                for p in original.postings
            ],
        )
        try:
            async with self.session.begin_nested():
                return await self.post(new)
        except (IntegrityError, UniqueViolationError) as exc:
            # The ledger's hot path runs on asyncpg directly: its errors arrive unwrapped.
            if "ledger_transactions_reverses_transaction_id_key" in str(exc):
                raise AlreadyReversed() from exc
            raise

    async def balance_of(self, ref: AccountRef) -> int:
        """Cached balance of one account (summed over its shards)."""
        return await self.repository.account_balance(*ref.key)
