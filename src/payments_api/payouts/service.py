"""Withdrawals that never pay twice and never lose money.

1. ``reserve`` (one DB transaction): checks (payout account enabled, wallet not frozen,
   limits), the withdrawal row (``pending``) and the ledger hold available ->
   withdrawing, committed together. Concurrent withdrawals of one wallet serialise on
   the ledger's row lock, so only what fits succeeds.
2. ``transfer`` (no DB transaction open): a Stripe Transfer to the connected account
   with the idempotency key ``<namespace>:withdrawal:{id}`` (payments_api.installation).
3. ``settle`` (a new transaction): created -> ``transferred`` and withdrawing ->
   stripe_balance; refused by Stripe -> ``failed`` and withdrawing -> available;
   unknown (timeout, 5xx, 429) -> stays ``pending`` with a next attempt time.
4. ``recover`` (the worker, every minute and after each unknown outcome): repeats step 2
   with the same key — Stripe answers with the Transfer it already made, if any — and
   settles. A crash between 1 and 2 is the same case. ``transfer.created`` and
   ``transfer.reversed`` events settle it too; every ledger movement has a cause key
   per withdrawal and step, so whichever path comes first wins and the rest are no-ops.

Steps 2 to 4 run on the Stripe operation skeleton (``kit/stripe_operation.py``,
:class:`WithdrawalTransfer`); this module keeps what a withdrawal's answer means.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.auth import Principal
from payments_api.events.owner_events import tell_owner
from payments_api.events.types import EventType
from payments_api.kit.amounts import AmountNotInSteps, check_limits
from payments_api.kit.clock import stripe_time, utcnow
from payments_api.kit.idempotency import add_once
from payments_api.kit.pagination import parse_cursor, public_id
from payments_api.kit.reads import read_of
from payments_api.kit.stripe_flow import StripeFlow
from payments_api.kit.stripe_operation import UNKNOWN, Attempt, StripeOperation, Unknown
from payments_api.ledger import service as ledger_service
from payments_api.ledger import shapes
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.money import payout_step
from payments_api.payout_accounts.models import PayoutAccount
from payments_api.payout_accounts.repository import PayoutAccountRepository
from payments_api.payout_accounts.service import to_read
from payments_api.payouts.errors import PayoutAccountNotReady
from payments_api.payouts.models import Withdrawal
from payments_api.payouts.repository import WithdrawalRepository
from payments_api.payouts.schedule import expected_arrival
from payments_api.payouts.schemas import (
    PayoutList,
    PayoutRead,
    WithdrawalCreate,
    WithdrawalCreated,
    WithdrawalList,
    WithdrawalRead,
)
from payments_api.stripe.errors import (
    CardDeclined,
    PaymentProviderError,
    PaymentProviderUnavailable,
)
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import Payout
from payments_api.users.keyed_requests import KeyedRequest
from payments_api.users.repository import UserRepository

log = logging.getLogger(__name__)

WITHDRAWAL_PREFIX = "wd"
RECOVER_JOB = "payouts.recover"


def withdrawal_read(row: Withdrawal) -> WithdrawalRead:
    return read_of(WithdrawalRead, row, id=public_id(WITHDRAWAL_PREFIX, row.id))


def _account(withdrawal: Withdrawal, kind: AccountKind) -> ledger_service.AccountRef:
    """The withdrawal user's account of ``kind``, or the platform's Stripe balance."""
    if kind is AccountKind.stripe_balance:
        return ledger_service.AccountRef.platform(kind, withdrawal.currency)
    return ledger_service.AccountRef.user(withdrawal.user_id, kind, withdrawal.currency)


async def _move(
    session: AsyncSession,
    withdrawal: Withdrawal,
    step: str,
    amount: int,
    route: tuple[AccountKind, AccountKind],
    *,
    description: str,
    cause_type: CauseType = CauseType.withdrawal,
    cause_key: str | None = None,
    initiated_by: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Post the ledger transaction ``withdrawal_{step}``: ``amount`` of the withdrawal's
    money moves along ``route`` (out of, into), once per ``cause_key`` (by default
    ``withdrawal:{id}:{step}``)."""
    out_of, into = (_account(withdrawal, kind) for kind in route)
    await ledger_service.LedgerService(session).post(
        ledger_service.NewTransaction(
            type=f"withdrawal_{step}",
            cause_type=cause_type,
            cause_key=cause_key or f"withdrawal:{withdrawal.id}:{step}",
            description=description,
            metadata={"withdrawal_id": withdrawal.id, **(metadata or {})},
            postings=shapes.move(amount, out_of=out_of, into=into),
            initiated_by=initiated_by,
        )
    )


async def _emit(session: AsyncSession, withdrawal: Withdrawal, type: EventType) -> None:
    await tell_owner(session, type, withdrawal_read(withdrawal), withdrawal, kind="withdrawal")


Settled = tuple[Literal["transferred", "failed"], str]
"""Stripe's definite answer: the Transfer's id, or why it was refused."""


async def settle_withdrawal(
    session: AsyncSession, withdrawal: Withdrawal, answer: Settled, now: datetime
) -> None:
    """Stripe's definite answer, once per withdrawal: the Transfer exists, so the held
    money has left ``withdrawing`` for the connected account; or Stripe refused it, so
    the held money goes back to available. Either way it is retried no more."""
    if withdrawal.status != "pending":
        return
    outcome, detail = answer
    transferred = outcome == "transferred"
    into = AccountKind.stripe_balance if transferred else AccountKind.available
    await _move(
        session,
        withdrawal,
        outcome,
        withdrawal.amount,
        (AccountKind.withdrawing, into),
        description=f"Withdrawal {public_id(WITHDRAWAL_PREFIX, withdrawal.id)} {outcome}",
        metadata={"transfer" if transferred else "code": detail},
    )
    withdrawal.status = outcome
    withdrawal.next_attempt_at = None
    withdrawal.updated_at = now
    if transferred:
        withdrawal.stripe_transfer_id = detail
        withdrawal.transferred_at = now
    else:
        withdrawal.failure_code = detail[:64]
    await _emit(
        session,
        withdrawal,
        EventType.withdrawal_paid if transferred else EventType.withdrawal_failed,
    )


async def apply_reversal(
    session: AsyncSession, withdrawal: Withdrawal, amount_reversed: int, now: datetime
) -> None:
    """Money a reversed Transfer brought back to the platform returns to available."""
    delta = min(amount_reversed, withdrawal.amount) - withdrawal.amount_reversed
    if withdrawal.status != "transferred" and withdrawal.status != "reversed":
        raise RuntimeError(f"withdrawal {withdrawal.id} reversed before it was transferred")
    if delta <= 0:
        return
    await _move(
        session,
        withdrawal,
        "reversed",
        delta,
        (AccountKind.stripe_balance, AccountKind.available),
        description=f"Transfer of {public_id(WITHDRAWAL_PREFIX, withdrawal.id)} reversed",
        cause_type=CauseType.stripe_event,
        cause_key=f"withdrawal:{withdrawal.id}:reversed:{amount_reversed}",
        metadata={"amount_reversed": amount_reversed, "transfer": withdrawal.stripe_transfer_id},
    )
    withdrawal.amount_reversed += delta
    withdrawal.status = "reversed"
    withdrawal.updated_at = now


class WithdrawalTransfer(StripeOperation[Withdrawal, dict[str, Any], Settled]):
    """Steps 2 to 4 of a withdrawal on the Stripe operation skeleton."""

    retry_job = RECOVER_JOB
    name = "withdrawal"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeGateway,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(sessionmaker, now=now)
        self.stripe = stripe

    async def claim(
        self, session: AsyncSession, row_id: int
    ) -> tuple[Withdrawal, Attempt[dict[str, Any]] | None]:
        withdrawal = await WithdrawalRepository(session).get(row_id, for_update=True)
        if withdrawal is None:
            raise LookupError(row_id)
        if withdrawal.status != "pending":
            return withdrawal, None
        withdrawal.attempts += 1
        # Claim the next attempt now so a concurrent recovery does not pile on.
        withdrawal.next_attempt_at = self.next_attempt_at(withdrawal.attempts)
        params: dict[str, Any] = {
            "amount": withdrawal.amount,
            "currency": withdrawal.currency,
            "destination": withdrawal.stripe_account_id,
            "transfer_group": f"withdrawal_{withdrawal.id}",
            "metadata": {"withdrawal_id": str(withdrawal.id), "user_id": withdrawal.user_id},
        }
        return withdrawal, Attempt(params, "withdrawal", withdrawal.id, withdrawal.attempts)

    async def call(self, request: dict[str, Any], idempotency_key: str) -> Settled | Unknown:
        try:
            transfer = await self.stripe.create_transfer(request, idempotency_key=idempotency_key)
        except (PaymentProviderUnavailable, CardDeclined):
            # Unknown: a timeout, or an answer a transfer should never get (a card
            # error). The withdrawal stays pending, the client is told so (202), and
            # recovery retries with the same key: the answer matches what finally
            # happens instead of a 402 "declined" that the recovery later contradicts.
            return UNKNOWN
        except PaymentProviderError:
            # Stripe answered and refused (e.g. insufficient platform balance, account
            # cannot receive): definite, so the money goes back.
            return "failed", "transfer_refused"
        return "transferred", transfer.id

    async def _locked(self, session: AsyncSession, withdrawal_id: int) -> Withdrawal:
        withdrawal = await WithdrawalRepository(session).get(withdrawal_id, for_update=True)
        assert withdrawal is not None  # noqa: S101 - claimed before the call
        return withdrawal

    async def settle(self, session: AsyncSession, row_id: int, answer: Settled) -> Withdrawal:
        withdrawal = await self._locked(session, row_id)
        await settle_withdrawal(session, withdrawal, answer, self.now())
        return withdrawal

    async def unknown(
        self, session: AsyncSession, row_id: int, attempt: Attempt[dict[str, Any]]
    ) -> Withdrawal:
        withdrawal = await self._locked(session, row_id)
        if withdrawal.status == "pending":
            log.warning("withdrawal %s: transfer outcome unknown, will retry", row_id)
            await self.schedule_retry(session, row_id, withdrawal.attempts)
        return withdrawal

    async def due(self, session: AsyncSession, now: datetime, limit: int) -> list[int]:
        return await WithdrawalRepository(session).stuck(now, limit)


class PayoutService(StripeFlow):
    @cached_property
    def transfers(self) -> WithdrawalTransfer:
        """Steps 2 to 4 of this service's withdrawals."""
        return WithdrawalTransfer(self.sessionmaker, self.stripe, now=self.now)

    def _check_limits(self, amount: int, currency: str) -> None:
        check_limits(self.settings, "withdrawal", amount, currency, what="Withdrawals")
        # A withdrawal ends in a payout to the payee's bank, in whole units for huf,
        # twd and isk.
        AmountNotInSteps.check(amount, currency, payout_step(currency), "Withdrawals")

    async def withdraw(
        self, principal: Principal, body: WithdrawalCreate, idempotency_key: str
    ) -> WithdrawalCreated:
        """Reserve, transfer and settle one withdrawal (see the module docstring)."""
        withdrawal = await self.reserve(principal, body, idempotency_key)
        if withdrawal.status == "pending" and withdrawal.attempts == 0:
            withdrawal = await self.transfer_and_settle(withdrawal.id)
        async with self.sessionmaker() as session:
            available = await ledger_service.LedgerService(session).balance_of(
                _account(withdrawal, AccountKind.available)
            )
        return WithdrawalCreated(
            **withdrawal_read(withdrawal).model_dump(), available_after=available
        )

    async def reserve(
        self, principal: Principal, body: WithdrawalCreate, idempotency_key: str
    ) -> Withdrawal:
        """Step 1: the pending withdrawal and its ledger hold, in one transaction."""
        self._check_limits(body.amount, body.currency)
        keyed = KeyedRequest.of(
            body, idempotency_key, "This Idempotency-Key was used for another request."
        )
        async with self.transfers.reserve() as session:
            withdrawals = WithdrawalRepository(session)
            user, existing = await keyed.caller_and_earlier(session, principal, withdrawals.by_key)
            if existing is not None:
                return existing
            user = await UserRepository(session).get(user.id, for_update=True) or user
            account = await PayoutAccountRepository(session).get_by_user(user.id)
            destination = _destination(account)
            if destination is None:
                raise PayoutAccountNotReady(
                    "Finish payout setup first (GET /api/v1/me/payout-account).",
                    payout_account=to_read(account).model_dump(mode="json"),
                )
            withdrawal = Withdrawal(
                user_id=user.id,
                amount=body.amount,
                currency=body.currency,
                status="pending",
                stripe_account_id=destination,
                idempotency_key=idempotency_key,
                request_fingerprint=keyed.fingerprint,
                attempts=0,
                amount_reversed=0,
                expected_arrival_date=expected_arrival(
                    account.payout_schedule if account is not None else None,
                    start=self.now().date(),
                    default_delay_days=self.settings.payout_default_delay_days,
                ),
            )
            added = await add_once(
                session, withdrawal, lambda: withdrawals.by_key(user.id, idempotency_key)
            )
            if added is not withdrawal:
                return added
            await _move(
                session,
                withdrawal,
                "hold",
                withdrawal.amount,
                (AccountKind.available, AccountKind.withdrawing),
                description=f"Withdrawal {public_id(WITHDRAWAL_PREFIX, withdrawal.id)}",
                # A frozen wallet refuses this in the ledger (WalletFrozen, 409).
                initiated_by=user.id,
            )
            await _emit(session, withdrawal, EventType.withdrawal_created)
            return withdrawal

    async def transfer_and_settle(self, withdrawal_id: int) -> Withdrawal:
        """Steps 2 and 3: (re)try the Stripe Transfer and record what happened."""
        return await self.transfers.run(withdrawal_id)

    async def recover(self, *, limit: int = 100) -> int:
        """Finish pending withdrawals whose transfer is due for another try."""
        return await self.transfers.recover(limit=limit)

    async def withdrawals(
        self, user_id: str, *, limit: int, starting_after: str | None
    ) -> WithdrawalList:
        """The user's withdrawal requests, newest first, a page after ``starting_after``."""
        before = parse_cursor(WITHDRAWAL_PREFIX, starting_after)
        async with self.sessionmaker() as session:
            rows = await WithdrawalRepository(session).page(
                user_id, limit=limit + 1, before_id=before
            )
        return WithdrawalList(
            data=[withdrawal_read(w) for w in rows[:limit]], has_more=len(rows) > limit
        )

    async def list(
        self,
        principal: Principal,
        *,
        limit: int,
        status: str | None,
        starting_after: str | None = None,
    ) -> PayoutList:
        async with self.sessionmaker() as session:
            account = await PayoutAccountRepository(session).get_by_user(principal.sub)
            withdrawals = await WithdrawalRepository(session).recent(principal.sub, 20)
        snapshot = to_read(account)
        data: list[PayoutRead] = []
        has_more = False
        if account is not None and account.stripe_account_id:
            page = await self.stripe.list_payouts(
                stripe_account=account.stripe_account_id,
                limit=limit,
                status=status,
                starting_after=starting_after,
            )
            has_more = page.has_more
            data = [_payout_read(p) for p in page.data]
        return PayoutList(
            data=data,
            has_more=has_more,
            withdrawals=[withdrawal_read(w) for w in withdrawals],
            payout_account=snapshot,
        )


def _destination(account: PayoutAccount | None) -> str | None:
    """The connected account to transfer to, if it can receive money now."""
    if account is None or account.status != "enabled" or not account.payouts_enabled:
        return None
    return account.stripe_account_id


def _payout_read(payout: Payout) -> PayoutRead:
    created = stripe_time(payout.created) or utcnow()
    return PayoutRead(
        id=payout.id,
        amount=payout.amount,
        currency=payout.currency,
        status=payout.status,
        arrival_date=stripe_time(payout.arrival_date),
        created_at=created,
        created=created,
        failure_code=payout.failure_code,
    )
