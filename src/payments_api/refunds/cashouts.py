"""Wallet cash-outs: a customer returns unspent top-up money to the cards it came from.

The same two phases as every refund (see :mod:`payments_api.refunds.service`), shared
rather than copied:

1. ``reserve``, one transaction: the customer's confirmed top-ups paid within Stripe's
   refund window (``wallet_refund_window_days``) are locked in id order; what is still
   refundable on each (paid less refunded less refunds in flight) is allocated newest
   charge first; one ``refunds`` row per charge (origin ``wallet``) and the cash-out row
   are written; the whole amount moves ``available -> refunding`` in one ledger
   transaction initiated by the customer (a frozen wallet is refused there, like a
   withdrawal; a short balance is ``insufficient_funds``). Refused requests write nothing.
2. each part goes through :meth:`RefundService.submit`: a Stripe Refund of the top-up's
   PaymentIntent with the key ``<namespace>:refund:{refund_id}``, its answer applied by
   :class:`RefundSettlement`. Stripe down: the part stays pending with its hold and the
   refund recovery job (``refunds.recover``) retries it with the same key.
3. Stripe's word settles each part (``refunding -> stripe_balance``) or gives it back
   (``refunding -> available``), whether it comes in the API answer or in a
   ``refund.*``/``charge.refunded`` event first; the cash-out's status follows its parts.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cached_property

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.auth import Principal
from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.kit.amounts import AmountNotInSteps, check_limits
from payments_api.kit.idempotency import add_once
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.kit.stripe_flow import StripeFlow
from payments_api.ledger import service as ledger_service
from payments_api.ledger import shapes
from payments_api.ledger.errors import InsufficientFunds, WalletFrozen
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.money import charge_step
from payments_api.orders.refund_errors import (
    NothingRefundable,
    RefundExceedsRefundable,
    WalletRefundNotFound,
)
from payments_api.orders.refund_models import Refund, WalletRefund
from payments_api.orders.refund_repository import (
    IN_FLIGHT,
    RefundRepository,
    WalletRefundRepository,
)
from payments_api.refunds import metrics
from payments_api.refunds.reservation import order_refund
from payments_api.refunds.schemas import WalletRefundCreate, WalletRefundList, WalletRefundRead
from payments_api.refunds.service import RefundService
from payments_api.refunds.wallet_refunds import WALLET_REFUND_PREFIX, wallet_refund_read
from payments_api.users.keyed_requests import KeyedRequest

log = logging.getLogger(__name__)


class CashoutService(StripeFlow):
    @cached_property
    def refunds(self) -> RefundService:
        """Where each part of a cash-out goes to Stripe, as any refund."""
        return RefundService(self.sessionmaker, self.stripe, self.settings, now=self.now)

    def _check_limits(self, amount: int, currency: str) -> None:
        check_limits(self.settings, "cashout", amount, currency, what="Wallet refunds")
        AmountNotInSteps.check(amount, currency, charge_step(currency), "Refunds")

    async def create(
        self, principal: Principal, body: WalletRefundCreate, idempotency_key: str
    ) -> tuple[WalletRefundRead, bool]:
        """Cash out; returns the cash-out and whether Stripe answered for every part."""
        wallet_refund_id = await self.reserve(principal, body, idempotency_key)
        async with self.sessionmaker.begin() as session:
            parts = (await WalletRefundRepository(session).parts([wallet_refund_id]))[
                wallet_refund_id
            ]
        for part in parts:
            if part.status == "pending" and part.stripe_refund_id is None:
                await self.refunds.submit(part.id)
        async with self.sessionmaker.begin() as session:
            read = await self._read(session, wallet_refund_id)
        known = all(
            p.stripe_refund_id is not None or p.status not in IN_FLIGHT for p in read.refunds
        )
        return read, known

    async def reserve(
        self, principal: Principal, body: WalletRefundCreate, idempotency_key: str
    ) -> int:
        """Step 1 (see the module docstring); returns the cash-out's id."""
        self._check_limits(body.amount, body.currency)
        keyed = KeyedRequest.of(
            body, idempotency_key, "This Idempotency-Key was used for another refund."
        )
        currency, amount = body.currency, body.amount
        async with self.sessionmaker.begin() as session:
            repository = WalletRefundRepository(session)
            user, existing = await keyed.caller_and_earlier(session, principal, repository.by_key)
            if existing is not None:
                return existing.id
            if user.frozen:
                # The ledger refuses it too (under its lock); this answers before any work.
                raise WalletFrozen(
                    "The wallet is frozen: money cannot leave it by the owner's own action."
                )
            since = self.now() - timedelta(days=self.settings.wallet_refund_window_days)
            topups = await repository.refundable_topups(user.id, currency, since=since)
            ledger = ledger_service.LedgerService(session)
            available_ref = ledger_service.AccountRef.user(user.id, AccountKind.available, currency)
            available = await ledger.balance_of(available_ref)
            if amount > available:
                raise InsufficientFunds(
                    f"The wallet holds {max(available, 0)} {currency} minor units available.",
                    currency=currency,
                    balance=max(available, 0),
                    required=amount,
                )
            refundable = [(o, o.amount - o.refunded_amount - f) for o, f in topups]
            refundable = [(o, r) for o, r in refundable if r > 0]
            total = sum(r for _, r in refundable)
            if total == 0:
                raise NothingRefundable(
                    f"No {currency} top-up paid in the last "
                    f"{self.settings.wallet_refund_window_days} days is left to refund.",
                    refundable=0,
                    requested=amount,
                    currency=currency,
                )
            if amount > total:
                raise RefundExceedsRefundable(
                    f"At most {total} {currency} minor units can go back to the cards "
                    f"(top-ups of the last {self.settings.wallet_refund_window_days} days).",
                    refundable=total,
                    requested=amount,
                    currency=currency,
                )
            row = WalletRefund(
                user_id=user.id,
                amount=amount,
                currency=currency,
                status="pending",
                refunded_amount=0,
                failed_amount=0,
                idempotency_key=idempotency_key,
                request_fingerprint=keyed.fingerprint,
            )
            added = await add_once(
                session, row, lambda: repository.by_key(user.id, idempotency_key)
            )
            if added is not row:
                return added.id
            parts: list[Refund] = []
            left = amount
            for order, room in refundable:  # newest charge first
                if left == 0:
                    break
                share = min(left, room)
                left -= share
                part = order_refund(
                    order,
                    share,
                    status="pending",
                    origin="wallet",
                    reason="requested_by_customer",
                    hold_amount=share,
                    stripe_attempts=0,
                    wallet_refund_id=row.id,
                )
                await RefundRepository(session).add(part)
                parts.append(part)
            await ledger.post(
                ledger_service.NewTransaction(
                    type="wallet_refund_hold",
                    cause_type=CauseType.system,
                    cause_key=f"wallet_refund:{row.id}:hold",
                    description=f"Cash-out {public_id(WALLET_REFUND_PREFIX, row.id)} to card",
                    metadata={"wallet_refund_id": row.id, "refund_ids": [p.id for p in parts]},
                    postings=shapes.move(
                        amount,
                        out_of=available_ref,
                        into=ledger_service.AccountRef.user(
                            user.id, AccountKind.refunding, currency
                        ),
                    ),
                    # Money leaving by the owner's own action: refused while frozen, and
                    # InsufficientFunds (nothing written) if spent concurrently.
                    initiated_by=user.id,
                )
            )
            await emit(
                session,
                EventType.wallet_refund_created,
                wallet_refund_read(row, parts),
                change_key=f"wallet_refund:{row.id}:created",
                user_ids=[user.id],
            )
            metrics.REFUNDS.labels(origin="wallet", outcome="requested").inc(len(parts))
            return row.id

    async def _read(
        self, session: AsyncSession, wallet_refund_id: int, user_id: str | None = None
    ) -> WalletRefundRead:
        repository = WalletRefundRepository(session)
        row = await repository.get(wallet_refund_id, user_id=user_id)
        if row is None:
            raise WalletRefundNotFound()
        return wallet_refund_read(row, (await repository.parts([row.id]))[row.id])

    async def get(self, user_id: str, wallet_refund_id: str) -> WalletRefundRead:
        number = parse_public_id(WALLET_REFUND_PREFIX, wallet_refund_id)
        if number is None:
            raise WalletRefundNotFound()
        async with self.sessionmaker() as session:
            return await self._read(session, number, user_id)

    async def list(
        self, user_id: str, *, limit: int, starting_after: str | None
    ) -> WalletRefundList:
        before = parse_cursor(WALLET_REFUND_PREFIX, starting_after)
        async with self.sessionmaker() as session:
            repository = WalletRefundRepository(session)
            rows = await repository.page(user_id, limit=limit + 1, before_id=before)
            parts = await repository.parts([r.id for r in rows[:limit]])
        return WalletRefundList(
            data=[wallet_refund_read(r, parts[r.id]) for r in rows[:limit]],
            has_more=len(rows) > limit,
        )
