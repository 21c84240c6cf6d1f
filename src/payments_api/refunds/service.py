"""Refunds of pay-ins.

An admin refund never holds a database transaction open across the Stripe call:

1. one transaction locks the order, checks what is still refundable and what the
   customer still holds, writes the ``pending`` refund, moves the amount
   ``available -> withdrawing`` (the hold: the customer can neither spend nor withdraw
   money that is being refunded) and writes the audit entry. Refused requests write
   nothing;
2. Stripe is called with the idempotency key ``<namespace>:refund:{refund_id}``, so a retry after a
   timeout or a crash reaches the refund Stripe already made;
3. a second transaction applies Stripe's answer through :class:`RefundSettlement`, the
   same code the ``refund.*`` and ``charge.refunded`` events run.

The ledger moves only on Stripe's word: ``succeeded`` settles the hold (``withdrawing ->
stripe_balance``), ``failed``/``canceled`` releases it back to ``available``. Whichever
of the API response and the webhook comes first applies it; the other finds the refund
settled. Both lock the order row and then the refund row, and the cause key
``stripe:refund:{re_id}`` makes a second application impossible at the database anyway.

Which account pays a refund depends on what the pay-in credited: a top-up credited the
customer's ``available`` (so that is debited, through the hold); a catalog order
credited the platform's ``sales``. Refunds made without this API (the Stripe dashboard)
are recorded from Stripe's events the same way, without a hold: if the customer no
longer holds the money, the shortfall is booked to the platform's ``adjustments`` and
logged, because Stripe has already paid the money out.

A direct payment (a destination charge with an application fee) is refunded at Stripe
with ``reverse_transfer`` and ``refund_application_fee``: the payee's connected account
gives back its share and the platform its fee, in the payment's proportions. No wallet
holds that money, so there is no hold; the ledger settles the refund as
``stripe_balance +amount`` (to the card), ``stripe_balance -payee_share`` (the transfer
reversal) and ``platform_fees -fee_share``, split by cumulative largest remainder
(``money.proportional_part``) so partial refunds add up to the payment's exact split.
When the payee's connected account held less than its share before Stripe was asked,
the platform bears the difference (Stripe takes the reversal anyway and the platform
answers for the negative balance of an Express account): a second transaction books it
to ``adjustments`` (``refund:{id}:platform_cover``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.audit.repository import AuditLogRepository
from payments_api.auth import Principal
from payments_api.escrow.capture import is_manual_escrow_order
from payments_api.escrow.errors import EscrowNotFound
from payments_api.escrow.models import Escrow, EscrowFunding, EscrowStatus
from payments_api.escrow.repository import EscrowRepository
from payments_api.escrow.service import EscrowService
from payments_api.events.outbox import emit
from payments_api.events.types import EventType
from payments_api.installation import outgoing_keys
from payments_api.kit.amounts import AmountNotInSteps
from payments_api.kit.clock import utcnow
from payments_api.kit.idempotency import IdempotencyKeyReused, fingerprint
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.errors import InsufficientFunds
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.money import charge_step, largest_remainder, proportional_part
from payments_api.orders.errors import OrderNotFound
from payments_api.orders.models import Order
from payments_api.orders.reads import order_read
from payments_api.orders.repository import OrderRepository
from payments_api.projects.models import DirectPayment
from payments_api.projects.repository import DirectPaymentRepository
from payments_api.refunds import metrics
from payments_api.refunds.errors import (
    CreditAlreadySpent,
    OrderNotRefundable,
    RefundCurrencyMismatch,
    RefundExceedsAvailable,
    RefundExceedsRefundable,
    RefundNotFound,
    RefundNotSupported,
    RefundRejected,
    RefundToCardUnavailable,
)
from payments_api.refunds.escrow_refunds import (
    ESCROW_PREFIX,
    escrow_refund_read,
    list_escrow_refunds,
    refund_wallet_escrow,
)
from payments_api.refunds.models import Refund
from payments_api.refunds.payee_share import post_taking_from_payee, take_back_postings
from payments_api.refunds.released_authorizations import releases_an_authorization
from payments_api.refunds.repository import IN_FLIGHT, RefundRepository
from payments_api.refunds.schemas import RefundCreate, RefundList, RefundRead
from payments_api.refunds.wallet_refunds import WALLET_REFUND_PREFIX, refresh_wallet_refund
from payments_api.settings import Settings
from payments_api.stripe.errors import PaymentProviderError, PaymentProviderUnavailable
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.refs import stripe_id
from payments_api.users.models import User
from payments_api.users.repository import UserRepository

log = logging.getLogger(__name__)

REFUND_PREFIX = "rfd"
ORDER_PREFIX = "ord"
REFUNDABLE_PURPOSES = ("topup", "order", "direct")
REFUNDABLE_STATUSES = ("succeeded", "partially_refunded")
WALLET_PURPOSES = ("topup", "escrow")
"""Pay-ins that credited the customer's wallet: their refunds are held from it. An escrow
paid by card is refunded only through its cancellation (``refund_to: card``), once the
cancel has put the money back in the customer's available balance."""


def refund_read(refund: Refund) -> RefundRead:
    return RefundRead(
        id=public_id(REFUND_PREFIX, refund.id),
        order_id=public_id(ORDER_PREFIX, refund.order_id),
        user_id=refund.user_id,
        amount=refund.amount,
        currency=refund.currency,
        status=refund.status,
        origin=refund.origin,
        reason=refund.reason,
        note=refund.note,
        requested_by=refund.requested_by,
        held_amount=refund.hold_amount if refund.status in IN_FLIGHT else 0,
        stripe_refund_id=refund.stripe_refund_id,
        failure_reason=refund.failure_reason,
        credit_taken_back=refund.credit_amount,
        forced=refund.forced,
        payee_share=refund.payee_share,
        wallet_refund_id=(
            public_id(WALLET_REFUND_PREFIX, refund.wallet_refund_id)
            if refund.wallet_refund_id is not None
            else None
        ),
        created_at=refund.created_at,
        succeeded_at=refund.succeeded_at,
    )


def credit_to_take_back(order: Order, refunded_after: int) -> int:
    """The part of an order's granted credit to take back so that, once
    ``refunded_after`` minor units of the order are refunded, the credit taken back in
    all is the largest-remainder split of the grant between the refunded and the kept
    part of the payment (``largest_remainder(grant, [refunded, kept])[0]``): exact to the
    unit whatever the steps, the whole grant once the whole order is refunded. What was
    taken back already (``credit_taken_back_amount``) is subtracted."""
    if not order.granted_credit_amount:
        return 0
    target = largest_remainder(
        order.granted_credit_amount, [refunded_after, order.amount - refunded_after]
    )[0]
    return max(0, target - order.credit_taken_back_amount)


async def emit_failed(session: AsyncSession, refund: Refund) -> None:
    await emit(
        session,
        EventType.refund_failed,
        refund_read(refund),
        change_key=f"refund:{refund.id}:failed",
        user_ids=[refund.user_id],
    )


def hold_kind(refund: Refund) -> AccountKind:
    """Where a refund's hold sits: a wallet cash-out's in ``refunding`` (the customer
    sees it there), an admin refund's in ``withdrawing``."""
    return AccountKind.refunding if refund.wallet_refund_id is not None else AccountKind.withdrawing


def _user(user_id: str, kind: AccountKind, currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.user(user_id, kind, currency)


def _platform(kind: AccountKind, currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.platform(kind, currency)


def _order_snapshot(order: Order, in_flight: int) -> dict[str, Any]:
    return {
        "id": public_id(ORDER_PREFIX, order.id),
        "status": order.status,
        "amount": order.amount,
        "refunded_amount": order.refunded_amount,
        "refundable": order.amount - order.refunded_amount - in_flight,
    }


def _refresh_order_status(order: Order) -> None:
    if order.status not in ("succeeded", *REFUNDABLE_STATUSES, "refunded"):
        return  # not confirmed yet: the pay-in's own events decide its status
    if order.refunded_amount >= order.amount:
        order.status = "refunded"
    elif order.refunded_amount > 0:
        order.status = "partially_refunded"
    else:
        order.status = "succeeded"


FREEZE_REASON_PREFIX = "refund:"


async def freeze_for_refund(
    session: AsyncSession, refund: Refund, order: Order, *, request_id: str | None
) -> None:
    """A forced refund took back credit the buyer had spent: their available may be
    below zero, so the wallet is frozen as a dispute freezes it (withdrawals and spends
    refused) until an admin unfreezes it. Audited; an existing freeze keeps its reason."""
    user = await UserRepository(session).get(order.user_id, for_update=True)
    if user is None or user.frozen:
        return
    before = {"frozen": user.frozen, "frozen_reason": user.frozen_reason}
    user.frozen = True
    user.frozen_reason = f"{FREEZE_REASON_PREFIX}{public_id(REFUND_PREFIX, refund.id)}"
    user.updated_at = utcnow()
    await AuditLogRepository(session).record(
        actor_id=refund.requested_by or "system",
        action="wallet.freeze",
        target_type="user",
        target_id=user.id,
        before=before,
        after={"frozen": True, "frozen_reason": user.frozen_reason},
        reason=f"Forced refund {public_id(REFUND_PREFIX, refund.id)} took back spent credit",
        request_id=request_id,
    )


class RefundSettlement:
    """Applies Stripe's word on a refund: the only code that moves refunded money."""

    def __init__(
        self, session: AsyncSession, stripe: StripeGateway, *, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.session = session
        self.stripe = stripe
        self.now = now
        self.refunds = RefundRepository(session)
        self.orders = OrderRepository(session)
        self.ledger = ledger_service.LedgerService(session)

    async def apply(self, stripe_refund: dict[str, Any]) -> Refund | None:
        """Apply a Stripe Refund object (an API answer or an event's object), once.

        Returns our refund, or None when the refund is not about one of our orders.
        """
        stripe_id = str(stripe_refund["id"])
        found = await self._locate(stripe_refund)
        if found is None:
            found = await self._record_external(stripe_refund)
            if found is None:
                return None
        # Lock order then refund, in that order everywhere (API result, events, recovery).
        order = await self.orders.get(found.order_id, for_update=True)
        refund = await self.refunds.get(found.id, for_update=True)
        if order is None or refund is None:  # pragma: no cover - foreign keys guarantee them
            raise RuntimeError(f"refund {found.id} lost its order")
        if refund.stripe_refund_id is None:
            refund.stripe_refund_id = stripe_id
        elif refund.stripe_refund_id != stripe_id:
            log.error(
                "refund %s is %s at Stripe, not %s; ignoring",
                refund.id,
                refund.stripe_refund_id,
                stripe_id,
            )
            return refund
        await self._transition(refund, order, str(stripe_refund.get("status")), stripe_refund)
        return refund

    async def _locate(self, stripe_refund: dict[str, Any]) -> Refund | None:
        existing = await self.refunds.by_stripe_id(str(stripe_refund["id"]))
        if existing is not None:
            return existing
        raw = (stripe_refund.get("metadata") or {}).get("refund_id")
        if isinstance(raw, str) and (raw.isascii() and raw.isdigit()):
            # Our refund whose API answer has not been recorded yet (the event won the race).
            ours = await self.refunds.get(int(raw))
            if ours is not None and ours.stripe_refund_id in (None, stripe_refund["id"]):
                return ours
        return None

    async def _record_external(self, stripe_refund: dict[str, Any]) -> Refund | None:
        """A refund made without our API (the Stripe dashboard): record it as ours."""
        payment_intent = stripe_id(stripe_refund.get("payment_intent"))
        charge_id = stripe_id(stripe_refund.get("charge"))
        if payment_intent is None and charge_id is not None:
            charge = await self.stripe.retrieve_charge(charge_id)
            payment_intent = stripe_id(charge.get("payment_intent"))
        order = None
        if payment_intent is not None:
            order = await self.orders.by_stripe_ids(order_id=None, payment_intent_id=payment_intent)
        if order is None:
            log.info(
                "refund %s (payment %s) is not about one of our orders; ignored",
                stripe_refund.get("id"),
                payment_intent,
            )
            return None
        if is_manual_escrow_order(order) and await releases_an_authorization(
            stripe_refund, self.stripe
        ):
            log.info("refund %s released an authorization; not a refund", stripe_refund["id"])
            return None
        currency = str(stripe_refund.get("currency", order.currency)).lower()
        if currency != order.currency:
            raise ValueError(
                f"refund {stripe_refund['id']} is in {currency}, order in {order.currency}"
            )
        await self.refunds.insert_from_stripe(
            {
                "order_id": order.id,
                "user_id": order.user_id,
                "amount": int(stripe_refund["amount"]),
                "currency": currency,
                "status": "pending",
                "origin": "stripe",
                "reason": stripe_refund.get("reason"),
                "stripe_refund_id": str(stripe_refund["id"]),
                "hold_amount": 0,
            }
        )
        metrics.REFUNDS.labels(origin="stripe", outcome="recorded").inc()
        log.warning(
            "refund %s of order %s was made outside the API; recording it",
            stripe_refund["id"],
            order.id,
        )
        return await self.refunds.by_stripe_id(str(stripe_refund["id"]))

    async def _transition(
        self, refund: Refund, order: Order, status: str, stripe_refund: dict[str, Any]
    ) -> None:
        now = self.now()
        if status in IN_FLIGHT:
            if refund.status in IN_FLIGHT and refund.status != status:
                refund.status, refund.updated_at = status, now
            return
        if status == "succeeded":
            if refund.status in IN_FLIGHT:
                await self._settle(refund, order)
                refund.status, refund.succeeded_at, refund.updated_at = "succeeded", now, now
                order.refunded_amount += refund.amount
                _refresh_order_status(order)
                order.updated_at = now
                metrics.REFUNDS.labels(origin=refund.origin, outcome="succeeded").inc()
                await self._emit_succeeded(refund, order)
                await self.refresh_cashout(refund)
            elif refund.status != "succeeded":
                # failed and canceled are final at Stripe: a late "succeeded" is stale.
                log.warning(
                    "refund %s is %s; ignoring Stripe's succeeded", refund.id, refund.status
                )
            return
        if status in ("failed", "canceled"):
            reason = str(stripe_refund.get("failure_reason") or status)[:64]
            if refund.status in IN_FLIGHT:
                await self.release_hold(refund)
            elif refund.status == "succeeded":
                # Stripe could not deliver a refund it had reported succeeded (e.g. a
                # closed card): the money is back at Stripe, so back where it came from.
                await self._undo(refund)
                order.refunded_amount -= refund.amount
                _refresh_order_status(order)
                order.updated_at = now
            else:
                return
            refund.status, refund.failure_reason, refund.updated_at = status, reason, now
            metrics.REFUNDS.labels(origin=refund.origin, outcome=status).inc()
            await emit_failed(self.session, refund)
            await self.refresh_cashout(refund)
            return
        log.warning("refund %s: unknown Stripe status %r ignored", refund.id, status)

    async def refresh_cashout(self, refund: Refund) -> None:
        if refund.wallet_refund_id is not None:
            await refresh_wallet_refund(self.session, refund.wallet_refund_id, self.now())

    async def _emit_succeeded(self, refund: Refund, order: Order) -> None:
        await emit(
            self.session,
            EventType.refund_succeeded,
            refund_read(refund),
            change_key=f"refund:{refund.id}:succeeded",
            user_ids=[refund.user_id],
        )
        await emit(
            self.session,
            EventType.order_refunded,
            order_read(order),
            change_key=f"order:{order.id}:refunded:{refund.id}",
            user_ids=[order.user_id],
        )

    async def _settle(self, refund: Refund, order: Order) -> None:
        """The money leaves the platform's Stripe balance, taken from what the pay-in
        credited: the hold (top-ups), the customer's available (dashboard refunds of
        top-ups), or the platform's sales (catalog orders)."""
        currency, amount = refund.currency, refund.amount
        debits: list[ledger_service.PostingSpec] = []
        shortfall = 0
        if order.purpose in WALLET_PURPOSES and refund.hold_amount:
            debits.append(
                ledger_service.PostingSpec(
                    _user(refund.user_id, hold_kind(refund), currency), -refund.hold_amount
                )
            )
            shortfall = amount - refund.hold_amount
        elif order.purpose in WALLET_PURPOSES:
            available = await self.ledger.balance_of(
                _user(refund.user_id, AccountKind.available, currency)
            )
            taken = max(0, min(available, amount))
            if taken:
                debits.append(
                    ledger_service.PostingSpec(
                        _user(refund.user_id, AccountKind.available, currency), -taken
                    )
                )
            shortfall = amount - taken
        elif order.purpose == "order":
            # The credit taken back is held in the buyer's withdrawing since the request;
            # the rest comes out of the sale.
            if refund.hold_amount:
                debits.append(
                    ledger_service.PostingSpec(
                        _user(refund.user_id, AccountKind.withdrawing, currency),
                        -refund.hold_amount,
                    )
                )
            if amount != refund.hold_amount:
                debits.append(
                    ledger_service.PostingSpec(
                        _platform(AccountKind.sales, currency), refund.hold_amount - amount
                    )
                )
        elif order.purpose == "direct":
            await self._settle_direct(refund, order)
            return
        else:
            shortfall = amount
        if shortfall:
            log.warning(
                "refund %s: %s minor units not covered by the customer's wallet were booked "
                "to the platform's adjustments",
                refund.id,
                shortfall,
            )
            debits.append(
                ledger_service.PostingSpec(_platform(AccountKind.adjustments, currency), -shortfall)
            )
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="refund",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:refund:{refund.stripe_refund_id}",
                description=f"Refund {public_id(REFUND_PREFIX, refund.id)} of "
                f"{public_id(ORDER_PREFIX, refund.order_id)}",
                metadata={
                    "refund_id": refund.id,
                    "order_id": refund.order_id,
                    "refund": refund.stripe_refund_id,
                    "shortfall": shortfall,
                },
                postings=[
                    *debits,
                    ledger_service.PostingSpec(
                        _platform(AccountKind.stripe_balance, currency), amount
                    ),
                ],
            )
        )

    async def _settle_direct(self, refund: Refund, order: Order) -> None:
        """A destination charge's refund: the payee's share comes back by the transfer
        reversal, the fee's share from the platform's fees (see the module docstring)."""
        payment = await DirectPaymentRepository(self.session).by_order(order.id, for_update=True)
        if payment is None:  # pragma: no cover - a succeeded direct order has its row
            raise RuntimeError(f"direct order {order.id} has no payment row")
        currency, amount = refund.currency, refund.amount
        fee_share = proportional_part(
            amount, payment.amount, payment.application_fee_amount, payment.refunded_amount
        )
        payee_share = amount - fee_share
        coverable = refund.payee_coverable
        covered = 0 if coverable is None else max(0, payee_share - max(0, coverable))
        refund.payee_share, refund.fee_share, refund.platform_covered = (
            payee_share,
            fee_share,
            covered,
        )
        payment.refunded_amount += amount
        payment.refunded_fee_amount += fee_share
        stripe_balance = _platform(AccountKind.stripe_balance, currency)
        postings = [ledger_service.PostingSpec(stripe_balance, amount)]
        if payee_share:
            postings.append(ledger_service.PostingSpec(stripe_balance, -payee_share))
        if fee_share:
            postings.append(
                ledger_service.PostingSpec(
                    _platform(AccountKind.platform_fees, currency), -fee_share
                )
            )
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="direct_refund",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:refund:{refund.stripe_refund_id}",
                description=f"Refund {public_id(REFUND_PREFIX, refund.id)} of direct payment "
                f"{public_id(ORDER_PREFIX, refund.order_id)}",
                metadata={
                    "refund_id": refund.id,
                    "order_id": refund.order_id,
                    "refund": refund.stripe_refund_id,
                    "payment_intent": payment.stripe_payment_intent_id,
                    "payee_id": payment.payee_id,
                    "payee_share": payee_share,
                    "fee_share": fee_share,
                },
                postings=postings,
            )
        )
        if covered:
            log.warning(
                "refund %s: the payee's connected account held %s of its %s %s share; the "
                "platform covers %s",
                refund.id,
                coverable,
                payee_share,
                currency,
                covered,
            )
            await self.ledger.post(
                ledger_service.NewTransaction(
                    type="direct_refund_cover",
                    cause_type=CauseType.system,
                    cause_key=f"refund:{refund.id}:platform_cover",
                    description=f"Platform covers what the payee's account could not give "
                    f"back for {public_id(REFUND_PREFIX, refund.id)}",
                    metadata={
                        "refund_id": refund.id,
                        "order_id": refund.order_id,
                        "payee_id": payment.payee_id,
                        "payee_coverable": coverable,
                        "covered": covered,
                    },
                    postings=[
                        ledger_service.PostingSpec(
                            _platform(AccountKind.adjustments, currency), -covered
                        ),
                        ledger_service.PostingSpec(stripe_balance, covered),
                    ],
                )
            )

    async def release_hold(self, refund: Refund) -> None:
        """Stripe did not refund: the held money goes back to available."""
        await self._credit_not_taken(refund)
        if not refund.hold_amount:
            return
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="refund_release",
                cause_type=CauseType.system,
                cause_key=f"refund:{refund.id}:release",
                description=f"Refund {public_id(REFUND_PREFIX, refund.id)} did not happen",
                metadata={"refund_id": refund.id, "order_id": refund.order_id},
                postings=[
                    ledger_service.PostingSpec(
                        _user(refund.user_id, hold_kind(refund), refund.currency),
                        -refund.hold_amount,
                    ),
                    ledger_service.PostingSpec(
                        _user(refund.user_id, AccountKind.available, refund.currency),
                        refund.hold_amount,
                    ),
                ],
            )
        )

    async def _credit_not_taken(self, refund: Refund) -> None:
        """A refund that did not happen took no credit back: the order's count of credit
        taken back forgets it (the held credit itself returns with the hold)."""
        if not refund.credit_amount:
            return
        order = await self.orders.get(refund.order_id, for_update=True)
        if order is not None:
            order.credit_taken_back_amount -= refund.credit_amount

    async def _undo(self, refund: Refund) -> None:
        """The exact opposite of the settlement, with the customer's share returned to
        available (the hold it came from is gone)."""
        settled = await self.ledger.repository.get_transaction(
            cause_key=f"stripe:refund:{refund.stripe_refund_id}"
        )
        if settled is None:  # pragma: no cover - succeeded always posted it
            raise RuntimeError(f"refund {refund.id} succeeded without a ledger transaction")
        await self._credit_not_taken(refund)
        if refund.payee_share or refund.fee_share:
            payment = await DirectPaymentRepository(self.session).by_order(
                refund.order_id, for_update=True
            )
            if payment is not None:
                payment.refunded_amount -= refund.amount
                payment.refunded_fee_amount -= refund.fee_share
        postings = []
        for posting in settled.postings:
            kind = AccountKind(posting.kind)
            if kind in (AccountKind.withdrawing, AccountKind.refunding):
                kind = AccountKind.available
            postings.append(
                ledger_service.PostingSpec(
                    ledger_service.AccountRef(kind, posting.currency, posting.owner_user_id),
                    -posting.amount,
                )
            )
        await self.ledger.post(
            ledger_service.NewTransaction(
                type="refund_failed",
                cause_type=CauseType.stripe_event,
                cause_key=f"stripe:refund_failed:{refund.stripe_refund_id}",
                description=f"Refund {public_id(REFUND_PREFIX, refund.id)} failed after succeeding",
                metadata={"refund_id": refund.id, "refund": refund.stripe_refund_id},
                postings=postings,
            )
        )


class RefundService:
    """Admin refunds: reserve, ask Stripe, apply the answer (see the module docstring)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        stripe: StripeGateway,
        settings: Settings,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe
        self.settings = settings
        self.now = now

    async def create(
        self,
        principal: Principal,
        body: RefundCreate,
        idempotency_key: str,
        *,
        request_id: str | None,
    ) -> tuple[RefundRead, bool]:
        """Refund an order; returns the refund and whether Stripe's answer is known.

        Raises the refund problems (nothing written), or ``RefundRejected`` when Stripe
        refused it (the refund is recorded failed and the hold released).
        """
        if body.escrow_id is not None:
            from_wallet = await self._refund_escrow(
                principal, body, idempotency_key, request_id=request_id
            )
            if from_wallet is not None:
                return from_wallet, True
            # A job paid by card: the refund of the order that paid it.
            body = await self._funding_order_body(body)
        refund = await self.reserve(principal, body, idempotency_key, request_id=request_id)
        if refund.status == "pending" and refund.stripe_refund_id is None:
            refund = await self.submit(refund.id)
        if refund.failure_reason == "provider_rejected":
            raise RefundRejected(
                "The payment provider refused the refund; nothing was refunded.",
                refund_id=public_id(REFUND_PREFIX, refund.id),
            )
        known = refund.stripe_refund_id is not None or refund.status not in IN_FLIGHT
        return refund_read(refund), known

    async def _refund_escrow(
        self,
        principal: Principal,
        body: RefundCreate,
        idempotency_key: str,
        *,
        request_id: str | None,
    ) -> RefundRead | None:
        """A job paid from the wallet: reversed back to the wallet now (``escrow_refunds``);
        None for a job paid by card (refunded through its funding order)."""
        number = parse_public_id(ESCROW_PREFIX, body.escrow_id or "")
        async with self.sessionmaker.begin() as session:
            escrow = (
                await EscrowRepository(session).get(number, for_update=True) if number else None
            )
            if escrow is None:
                raise EscrowNotFound(f"No escrow {body.escrow_id!r}.")
            if escrow.funding == EscrowFunding.card.value:
                return None
            actor = await UserRepository(session).upsert_from_principal(principal)
            refund = await refund_wallet_escrow(
                session,
                escrow,
                actor_id=actor.id,
                body=body,
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint(body.model_dump(mode="json")),
                request_id=request_id,
                now=self.now(),
            )
            return escrow_refund_read(refund)

    async def _funding_order_body(self, body: RefundCreate) -> RefundCreate:
        number = parse_public_id(ESCROW_PREFIX, body.escrow_id or "") or 0
        async with self.sessionmaker() as session:
            order = await OrderRepository(session).escrow_funding(number)
        if order is None:
            raise RefundNotSupported(
                "This job's card payment is not confirmed yet: nothing to refund.",
                purpose="escrow",
            )
        return body.model_copy(
            update={"escrow_id": None, "order_id": public_id(ORDER_PREFIX, order.id)}
        )

    async def reserve(
        self,
        principal: Principal,
        body: RefundCreate,
        idempotency_key: str,
        *,
        request_id: str | None,
    ) -> Refund:
        """Step 1: check, write the pending refund and its hold, audit; one transaction."""
        request_fingerprint = fingerprint(body.model_dump(mode="json"))
        order_number = parse_public_id(ORDER_PREFIX, body.order_id or "")
        async with self.sessionmaker.begin() as session:
            actor = await UserRepository(session).upsert_from_principal(principal)
            refunds = RefundRepository(session)
            existing = await refunds.by_idempotency_key(actor.id, idempotency_key)
            if existing is not None:
                if existing.request_fingerprint != request_fingerprint:
                    raise IdempotencyKeyReused("This Idempotency-Key was used for another refund.")
                return existing
            order = None
            if order_number is not None:
                order = await OrderRepository(session).get(order_number)
            escrow: Escrow | None = None
            if order is not None and order.purpose == "escrow":
                # The escrow's lock first, then the order's: the order cancel-to-card
                # takes them in, so the two cannot deadlock.
                escrow_id = int(order.reference.get("escrow_id", 0))
                escrow = await EscrowRepository(session).get(escrow_id, for_update=True)
            if order_number is not None:
                order = await OrderRepository(session).get(order_number, for_update=True)
            if order is None:
                raise OrderNotFound(f"No order {body.order_id!r}.")
            if body.currency is not None and body.currency != order.currency:
                raise RefundCurrencyMismatch(
                    f"Order {body.order_id} is in {order.currency}.", currency=order.currency
                )
            if order.purpose == "escrow":
                if escrow is None or escrow.status != EscrowStatus.completed.value:
                    raise RefundNotSupported(
                        "A job payment is refunded here once the job is completed; before "
                        "that, cancel the escrow (`refund_to: card` before acceptance).",
                        purpose=order.purpose,
                        escrow_status=escrow.status if escrow is not None else None,
                    )
            elif order.purpose not in REFUNDABLE_PURPOSES:
                raise RefundNotSupported(
                    f"Orders with purpose {order.purpose!r} cannot be refunded here yet.",
                    purpose=order.purpose,
                )
            if order.channel == "wallet":
                refund = await self._refund_to_wallet(
                    session,
                    order,
                    actor_id=actor.id,
                    body=body,
                    idempotency_key=idempotency_key,
                    request_fingerprint=request_fingerprint,
                    request_id=request_id,
                )
                return refund
            return await self._reserve_order(
                session,
                order,
                actor_id=actor.id,
                requested=body.amount,
                reason=body.reason,
                note=body.note,
                idempotency_key=idempotency_key,
                request_fingerprint=request_fingerprint,
                request_id=request_id,
                force=body.force,
                completed_escrow=escrow,
            )

    async def cancel_escrow_to_card(
        self,
        escrow_id: int,
        actor: User,
        *,
        reason: str | None,
        expected_status: EscrowStatus | None,
        request_id: str | None,
    ) -> tuple[Escrow, Refund | None]:
        """Cancel an escrow paid by card before acceptance and refund the card.

        One transaction cancels (everything held back to the customer's available
        balance) and reserves the refund of the card payment from there (the usual hold,
        key ``escrow_cancel:{escrow_id}`` of the actor), so the money cannot be spent in
        between; then Stripe is asked as for any refund. If Stripe refuses, the hold is
        released and the money stays in the wallet. Repeating the call finds the same
        refund.
        """
        key = f"escrow_cancel:{escrow_id}"
        async with self.sessionmaker.begin() as session:
            escrow = await EscrowRepository(session).get(escrow_id, for_update=True)
            refund: Refund | None = None
            if escrow is not None and EscrowService.may_see(escrow, actor):
                if escrow.funding != EscrowFunding.card.value:
                    raise RefundToCardUnavailable(
                        "This escrow was paid from the wallet: its money returns there."
                    )
                if escrow.status in (EscrowStatus.accepted.value, EscrowStatus.completed.value):
                    raise RefundToCardUnavailable(
                        "Only an escrow cancelled before acceptance is refunded to the card.",
                        current_status=escrow.status,
                    )
                refund = await RefundRepository(session).by_idempotency_key(actor.id, key)
            was = EscrowStatus(escrow.status) if escrow is not None else None
            result = await EscrowService(session, self.settings, now=self.now).cancel(
                escrow_id, actor, reason=reason, expected_status=expected_status
            )
            order = await OrderRepository(session).escrow_funding(escrow_id, for_update=True)
            if refund is None and result.changed and was is EscrowStatus.created and order:
                refund = await self._reserve_order(
                    session,
                    order,
                    actor_id=actor.id,
                    requested=min(result.escrow.hold_amount, order.amount - order.refunded_amount),
                    reason="requested_by_customer",
                    note=reason or "escrow cancelled before acceptance",
                    idempotency_key=key,
                    request_fingerprint=fingerprint({"escrow_id": escrow_id}),
                    request_id=request_id,
                )
            escrow = result.escrow
        if refund is not None and refund.status == "pending" and refund.stripe_refund_id is None:
            refund = await self.submit(refund.id)
        return escrow, refund

    async def _reserve_order(
        self,
        session: AsyncSession,
        order: Order,
        *,
        actor_id: str,
        requested: int | None,
        reason: str,
        note: str | None,
        idempotency_key: str,
        request_fingerprint: str,
        request_id: str | None,
        force: bool = False,
        completed_escrow: Escrow | None = None,
    ) -> Refund:
        """The checks and writes of step 1 on a locked order, in the caller's transaction.

        ``completed_escrow``: the order paid this escrow, which is completed; its
        settlement is reversed in proportion now, into the refund's hold
        (:meth:`_reverse_settlement`)."""
        refunds = RefundRepository(session)
        if order.status not in REFUNDABLE_STATUSES and order.status != "refunded":
            raise OrderNotRefundable(
                f"Order {public_id(ORDER_PREFIX, order.id)} is {order.status}.",
                order_status=order.status,
            )
        if order.stripe_payment_intent_id is None:  # pragma: no cover - set on success
            raise OrderNotRefundable(
                f"Order {public_id(ORDER_PREFIX, order.id)} has no Stripe payment."
            )
        in_flight = await refunds.in_flight_amount(order.id)
        refundable = order.amount - order.refunded_amount - in_flight
        if completed_escrow is not None:
            # A reversed settlement stays reversed even when the card refund then fails
            # (the money waits in the customer's wallet): never reverse it twice.
            refundable = order.amount - await refunds.reversed_amount(order.id)
        amount = requested if requested is not None else refundable
        if refundable <= 0 or amount > refundable:
            raise RefundExceedsRefundable(
                f"At most {max(refundable, 0)} {order.currency} minor units can still be "
                f"refunded on {public_id(ORDER_PREFIX, order.id)}.",
                refundable=max(refundable, 0),
                requested=amount,
                currency=order.currency,
            )
        AmountNotInSteps.check(amount, order.currency, charge_step(order.currency), "Refunds")
        ledger = ledger_service.LedgerService(session)
        wallet = _user(order.user_id, AccountKind.available, order.currency)
        credit = credit_to_take_back(order, order.refunded_amount + in_flight + amount)
        holds_wallet = order.purpose in WALLET_PURPOSES and completed_escrow is None
        available = await ledger.balance_of(wallet) if holds_wallet or credit else None
        forced = False
        if credit and available is not None and available < credit:
            if not force:
                raise CreditAlreadySpent(
                    f"The order granted {order.granted_credit_amount} {order.currency} minor "
                    f"units of wallet credit; this refund takes back {credit}, the buyer "
                    f"holds {max(available, 0)} available. Refund with `force: true` to take "
                    "it anyway (the wallet goes negative and is frozen).",
                    available=max(available, 0),
                    credit_to_take_back=credit,
                    currency=order.currency,
                )
            forced = True
        if holds_wallet and available is not None and available < amount:
            raise RefundExceedsAvailable(
                f"The customer holds {max(available, 0)} {order.currency} minor units "
                f"available; a refund of {amount} would take money they no longer have.",
                available=max(available, 0),
                requested=amount,
                currency=order.currency,
            )
        refund = Refund(
            order_id=order.id,
            user_id=order.user_id,
            amount=amount,
            currency=order.currency,
            status="pending",
            origin="admin",
            reason=reason,
            note=note,
            requested_by=actor_id,
            idempotency_key=idempotency_key,
            request_fingerprint=request_fingerprint,
            hold_amount=amount if order.purpose in WALLET_PURPOSES else credit,
            stripe_attempts=0,
            credit_amount=credit,
            forced=forced,
        )
        try:
            async with session.begin_nested():
                await refunds.add(refund)
        except IntegrityError:
            # A concurrent twin with the same key won: use its refund.
            twin = await refunds.by_idempotency_key(actor_id, idempotency_key)
            if twin is None or twin.request_fingerprint != request_fingerprint:
                raise IdempotencyKeyReused() from None
            return twin
        order.credit_taken_back_amount += credit
        if completed_escrow is not None:
            await self._reverse_settlement(session, refund, order, completed_escrow)
        elif refund.hold_amount:
            try:
                await ledger.post(
                    ledger_service.NewTransaction(
                        type="refund_hold",
                        cause_type=CauseType.system,
                        cause_key=f"refund:{refund.id}:hold",
                        description=f"Refund {public_id(REFUND_PREFIX, refund.id)} pending",
                        metadata={"refund_id": refund.id, "order_id": order.id},
                        postings=[
                            ledger_service.PostingSpec(wallet, -refund.hold_amount),
                            ledger_service.PostingSpec(
                                _user(order.user_id, AccountKind.withdrawing, order.currency),
                                refund.hold_amount,
                            ),
                        ],
                        allow_negative_available=forced,
                    )
                )
            except InsufficientFunds as exc:
                if credit:
                    raise CreditAlreadySpent(
                        "The buyer no longer holds the credit to take back.",
                        credit_to_take_back=credit,
                        currency=order.currency,
                    ) from exc
                # Spent concurrently since the check: the whole transaction rolls back.
                raise RefundExceedsAvailable(
                    "The customer no longer holds enough available money.",
                    requested=amount,
                    currency=order.currency,
                ) from exc
        await AuditLogRepository(session).record(
            actor_id=actor_id,
            action="refund.create",
            target_type="refund",
            target_id=public_id(REFUND_PREFIX, refund.id),
            before={
                "order": _order_snapshot(order, in_flight),
                "customer_available": available,
            },
            after={
                "order": _order_snapshot(order, in_flight + amount),
                "refund": {
                    "id": public_id(REFUND_PREFIX, refund.id),
                    "amount": amount,
                    "currency": order.currency,
                    "status": refund.status,
                    "held_amount": refund.hold_amount,
                },
                "customer_available": None
                if available is None
                else available - (refund.hold_amount if completed_escrow is None else 0),
                "credit_taken_back": credit,
                "forced": forced,
            },
            reason=note or reason,
            request_id=request_id,
        )
        if forced:
            await freeze_for_refund(session, refund, order, request_id=request_id)
        metrics.REFUNDS.labels(origin="admin", outcome="requested").inc()
        return refund

    async def _reverse_settlement(
        self, session: AsyncSession, refund: Refund, order: Order, escrow: Escrow
    ) -> None:
        """Take back a completed escrow's settlement in proportion to the refund: the
        payee's take (``proportional_part`` of the payee's amount, cumulative largest
        remainder over the order's refunds) and the rest from the platform's fees (the
        platform fee and the service fee it kept). What the payee no longer holds
        (withdrawn since) is covered by the platform, booked to ``adjustments``. It all
        goes into the customer's ``withdrawing`` as the refund's hold, settled to the
        card by Stripe's word like any refund (released to the customer's available if
        Stripe refuses). One ledger transaction, ``refund:{id}:reversal``."""
        currency, amount = order.currency, refund.amount
        # This refund's shares are not set yet: the sum is of the earlier ones.
        before = await RefundRepository(session).reversed_amount(order.id)
        payee_share = proportional_part(amount, order.amount, escrow.payee_amount, before)
        fee_share = amount - payee_share
        payee_wallet = _user(escrow.payee_id, AccountKind.available, currency)

        def reversal(covered: int) -> ledger_service.NewTransaction:
            postings = [
                ledger_service.PostingSpec(
                    _user(order.user_id, AccountKind.withdrawing, currency), amount
                ),
                *take_back_postings(payee_wallet, payee_share, fee_share, covered),
            ]
            return ledger_service.NewTransaction(
                type="escrow_settlement_reversal",
                cause_type=CauseType.system,
                cause_key=f"refund:{refund.id}:reversal",
                description=f"Refund {public_id(REFUND_PREFIX, refund.id)} reverses the "
                f"settlement of escrow esc_{escrow.id}",
                metadata={
                    "refund_id": refund.id,
                    "order_id": order.id,
                    "escrow_id": escrow.id,
                    "payee_id": escrow.payee_id,
                    "payee_share": payee_share,
                    "fee_share": fee_share,
                    "platform_covered": covered,
                },
                postings=postings,
            )

        covered, payee_available = await post_taking_from_payee(
            session, payee_wallet, payee_share, reversal
        )
        if covered:
            log.warning(
                "refund %s: the payee holds %s of its %s %s share; the platform covers %s",
                refund.id,
                payee_available,
                payee_share,
                currency,
                covered,
            )
        refund.payee_share, refund.fee_share = payee_share, fee_share
        refund.platform_covered, refund.payee_coverable = covered, max(0, payee_available)
        escrow.payee_reversed_amount += payee_share

    async def _refund_to_wallet(
        self,
        session: AsyncSession,
        order: Order,
        *,
        actor_id: str,
        body: RefundCreate,
        idempotency_key: str,
        request_fingerprint: str,
        request_id: str | None,
    ) -> Refund:
        """Refund an order paid from the wallet: back to the wallet, at once, in this
        transaction (no Stripe call). Same checks and proportions as a card refund: a
        direct payment gives back the payee's share (from the payee's available; what
        they withdrew since is covered by the platform, ``adjustments``) and the fee's
        share; an order that granted credit takes it back in proportion
        (``credit_already_spent`` unless forced)."""
        refunds = RefundRepository(session)
        if order.status not in REFUNDABLE_STATUSES and order.status != "refunded":
            raise OrderNotRefundable(
                f"Order {public_id(ORDER_PREFIX, order.id)} is {order.status}.",
                order_status=order.status,
            )
        refundable = order.amount - order.refunded_amount
        amount = body.amount if body.amount is not None else refundable
        if refundable <= 0 or amount > refundable:
            raise RefundExceedsRefundable(
                f"At most {max(refundable, 0)} {order.currency} minor units can still be "
                f"refunded on {public_id(ORDER_PREFIX, order.id)}.",
                refundable=max(refundable, 0),
                requested=amount,
                currency=order.currency,
            )
        currency = order.currency
        ledger = ledger_service.LedgerService(session)
        wallet = _user(order.user_id, AccountKind.available, currency)
        available = await ledger.balance_of(wallet)
        credit = credit_to_take_back(order, order.refunded_amount + amount)
        # The refunded amount reaches the wallet first: the credit must be covered by
        # what the buyer holds after it.
        forced = bool(credit) and available + amount < credit
        if forced and not body.force:
            raise CreditAlreadySpent(
                f"The order granted {order.granted_credit_amount} {currency} minor units of "
                f"wallet credit; this refund takes back {credit}, the buyer would hold "
                f"{max(available + amount, 0)}. Refund with `force: true` to take it anyway "
                "(the wallet goes negative and is frozen).",
                available=max(available, 0),
                credit_to_take_back=credit,
                currency=currency,
            )
        now = self.now()
        refund = Refund(
            order_id=order.id,
            user_id=order.user_id,
            amount=amount,
            currency=currency,
            status="succeeded",
            origin="admin",
            reason=body.reason,
            note=body.note,
            requested_by=actor_id,
            idempotency_key=idempotency_key,
            request_fingerprint=request_fingerprint,
            hold_amount=0,
            stripe_attempts=0,
            credit_amount=credit,
            forced=forced,
            succeeded_at=now,
        )
        try:
            async with session.begin_nested():
                await refunds.add(refund)
        except IntegrityError:
            twin = await refunds.by_idempotency_key(actor_id, idempotency_key)
            if twin is None or twin.request_fingerprint != request_fingerprint:
                raise IdempotencyKeyReused() from None
            return twin
        metadata: dict[str, Any] = {"refund_id": refund.id, "order_id": order.id}

        def to_wallet(
            extra: list[ledger_service.PostingSpec], **more: Any
        ) -> ledger_service.NewTransaction:
            return ledger_service.NewTransaction(
                type="wallet_refund",
                cause_type=CauseType.system,
                cause_key=f"refund:{refund.id}:wallet",
                description=f"Refund {public_id(REFUND_PREFIX, refund.id)} of "
                f"{public_id(ORDER_PREFIX, order.id)} to the wallet",
                metadata={**metadata, **more},
                postings=[ledger_service.PostingSpec(wallet, amount), *extra],
            )

        if order.purpose == "direct":
            payment = await DirectPaymentRepository(session).by_order(order.id, for_update=True)
            if payment is None:  # pragma: no cover - written with the order
                raise RuntimeError(f"direct order {order.id} has no payment row")
            fee_share = proportional_part(
                amount, payment.amount, payment.application_fee_amount, payment.refunded_amount
            )
            payee_share = amount - fee_share
            payee_wallet = _user(payment.payee_id, AccountKind.available, currency)

            def direct_back(covered: int) -> ledger_service.NewTransaction:
                return to_wallet(
                    take_back_postings(payee_wallet, payee_share, fee_share, covered),
                    payee_id=payment.payee_id,
                    payee_share=payee_share,
                    fee_share=fee_share,
                    platform_covered=covered,
                )

            covered, payee_available = await post_taking_from_payee(
                session, payee_wallet, payee_share, direct_back
            )
            refund.payee_share, refund.fee_share = payee_share, fee_share
            refund.platform_covered, refund.payee_coverable = covered, max(0, payee_available)
            payment.refunded_amount += amount
            payment.refunded_fee_amount += fee_share
        else:
            await ledger.post(
                to_wallet(
                    [ledger_service.PostingSpec(_platform(AccountKind.sales, currency), -amount)]
                )
            )
        if credit:
            await ledger.post(
                ledger_service.NewTransaction(
                    type="order_credit_reversal",
                    cause_type=CauseType.system,
                    cause_key=f"refund:{refund.id}:credit",
                    description=f"Wallet credit of {public_id(ORDER_PREFIX, order.id)} taken "
                    f"back by {public_id(REFUND_PREFIX, refund.id)}",
                    metadata={"refund_id": refund.id, "order_id": order.id, "forced": forced},
                    postings=[
                        ledger_service.PostingSpec(wallet, -credit),
                        ledger_service.PostingSpec(_platform(AccountKind.sales, currency), credit),
                    ],
                    allow_negative_available=forced,
                )
            )
            order.credit_taken_back_amount += credit
        order.refunded_amount += amount
        _refresh_order_status(order)
        order.updated_at = now
        await AuditLogRepository(session).record(
            actor_id=actor_id,
            action="refund.create",
            target_type="refund",
            target_id=public_id(REFUND_PREFIX, refund.id),
            before={"order": _order_snapshot(order, 0), "customer_available": available},
            after={
                "order": _order_snapshot(order, 0),
                "refund": {
                    "id": public_id(REFUND_PREFIX, refund.id),
                    "amount": amount,
                    "currency": currency,
                    "status": refund.status,
                    "to": "wallet",
                },
                "customer_available": available + amount - credit,
                "credit_taken_back": credit,
                "forced": forced,
            },
            reason=body.note or body.reason,
            request_id=request_id,
        )
        if forced:
            await freeze_for_refund(session, refund, order, request_id=request_id)
        metrics.REFUNDS.labels(origin="admin", outcome="succeeded").inc()
        await RefundSettlement(session, self.stripe, now=self.now)._emit_succeeded(refund, order)
        return refund

    async def submit(self, refund_id: int, *, look_up_first: bool = False) -> Refund:
        """Steps 2 and 3: ask Stripe (same key on every retry) and apply its answer.

        ``look_up_first`` (recovery) first looks for a refund Stripe already made for
        this row, so one made more than a day ago, when Stripe has forgotten the key,
        is found rather than made again.
        """
        async with self.sessionmaker.begin() as session:
            refund = await RefundRepository(session).get(refund_id, for_update=True)
            if refund is None:
                raise RefundNotFound()
            if refund.status != "pending" or refund.stripe_refund_id is not None:
                return refund
            order = await OrderRepository(session).get(refund.order_id)
            if order is None or order.stripe_payment_intent_id is None:  # pragma: no cover
                raise RuntimeError(f"refund {refund_id} has no payment to refund")
            refund.stripe_attempts += 1
            refund.updated_at = self.now()
            payment_intent = order.stripe_payment_intent_id
            direct: DirectPayment | None = None
            if order.purpose == "direct":
                direct = await DirectPaymentRepository(session).by_order(order.id)
        if direct is not None and refund.payee_coverable is None:
            await self._read_coverable(refund, direct)
        stripe_refund: dict[str, Any] | None = None
        try:
            if look_up_first:
                for candidate in await self.stripe.list_refunds(payment_intent=payment_intent):
                    if (candidate.get("metadata") or {}).get("refund_id") == str(refund_id):
                        stripe_refund = candidate
                        break
            if stripe_refund is None:
                stripe_refund = await self.stripe.create_refund(
                    payment_intent=payment_intent,
                    amount=refund.amount,
                    reason=refund.reason,
                    metadata={
                        "refund_id": str(refund.id),
                        "order_id": str(refund.order_id),
                    },
                    idempotency_key=(await outgoing_keys(self.sessionmaker)).derive(
                        "refund", refund.id
                    ),
                    reverse_transfer=direct is not None,
                    refund_application_fee=direct is not None and direct.application_fee_amount > 0,
                )
        except PaymentProviderUnavailable:
            # Unknown outcome: the refund stays pending with its hold; a retry (the admin's,
            # or the recovery job's) uses the same key and cannot refund twice.
            log.warning("refund %s: Stripe unavailable, will retry", refund_id)
            return refund
        except PaymentProviderError:
            return await self._rejected(refund_id)
        async with self.sessionmaker.begin() as session:
            applied = await RefundSettlement(session, self.stripe, now=self.now).apply(
                stripe_refund
            )
            if applied is None:  # pragma: no cover - metadata and order always match
                raise RuntimeError(f"Stripe refund {stripe_refund.get('id')} not applied")
            return applied

    async def _read_coverable(self, refund: Refund, payment: DirectPayment) -> None:
        """What the payee's connected account holds (available + pending) in the refund's
        currency, read before Stripe is asked to reverse the transfer and kept on the
        refund. Unreadable (Stripe down): left unknown, and the payee is taken to cover."""
        try:
            balance = await self.stripe.retrieve_balance(stripe_account=payment.stripe_account_id)
        except (PaymentProviderUnavailable, PaymentProviderError):
            log.warning("refund %s: the payee's balance could not be read", refund.id)
            return
        coverable = sum(
            int(entry.get("amount") or 0)
            for part in ("available", "pending")
            for entry in balance.get(part) or []
            if str(entry.get("currency", "")).lower() == refund.currency
        )
        async with self.sessionmaker.begin() as session:
            row = await RefundRepository(session).get(refund.id, for_update=True)
            if row is not None and row.payee_coverable is None:
                row.payee_coverable = coverable
        refund.payee_coverable = coverable

    async def _rejected(self, refund_id: int) -> Refund:
        """Stripe refused to create the refund: nothing was refunded, release the hold."""
        async with self.sessionmaker.begin() as session:
            settlement = RefundSettlement(session, self.stripe, now=self.now)
            refund = await RefundRepository(session).get(refund_id)
            if refund is None:  # pragma: no cover
                raise RefundNotFound()
            order = await settlement.orders.get(refund.order_id, for_update=True)
            refund = await settlement.refunds.get(refund_id, for_update=True)
            if refund is None or order is None:  # pragma: no cover
                raise RefundNotFound()
            if refund.status == "pending" and refund.stripe_refund_id is None:
                await settlement.release_hold(refund)
                refund.status, refund.failure_reason = "failed", "provider_rejected"
                refund.updated_at = self.now()
                metrics.REFUNDS.labels(origin=refund.origin, outcome="rejected").inc()
                await emit_failed(session, refund)
                await settlement.refresh_cashout(refund)
            return refund

    async def recover(self, *, limit: int = 50) -> int:
        """Finish refunds we asked for (admin refunds, cash-out parts) stuck before
        Stripe's answer (timeouts, crashes)."""
        cutoff = self.now() - timedelta(seconds=self.settings.refund_recovery_after_seconds)
        async with self.sessionmaker.begin() as session:
            stuck = await RefundRepository(session).stuck(cutoff, limit)
        for refund_id in stuck:
            try:
                await self.submit(refund_id, look_up_first=True)
            except Exception:
                log.exception("refund %s: recovery failed", refund_id)
        return len(stuck)


class RefundQueries:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = RefundRepository(session)

    async def list_for_escrow(
        self, *, escrow_id: str, limit: int, starting_after: str | None, status: str | None
    ) -> RefundList:
        """A job's refunds: a card-paid job's are its funding order's (``rfd_``), a
        wallet-paid job's its own (``rfe_``, always succeeded)."""
        number = parse_public_id(ESCROW_PREFIX, escrow_id)
        escrow = await EscrowRepository(self.session).get(number) if number else None
        if escrow is None:
            return RefundList(data=[], has_more=False)
        if escrow.funding == EscrowFunding.card.value:
            order = await OrderRepository(self.session).escrow_funding(escrow.id)
            if order is None:
                return RefundList(data=[], has_more=False)
            return await self.list(
                limit=limit,
                starting_after=starting_after,
                order_id=public_id(ORDER_PREFIX, order.id),
                status=status,
            )
        if status not in (None, "succeeded"):
            return RefundList(data=[], has_more=False)
        return await list_escrow_refunds(
            self.session, escrow_number=escrow.id, limit=limit, starting_after=starting_after
        )

    async def get(self, refund_id: str) -> RefundRead:
        number = parse_public_id(REFUND_PREFIX, refund_id)
        refund = await self.repository.get(number) if number is not None else None
        if refund is None:
            raise RefundNotFound()
        return refund_read(refund)

    async def list(
        self,
        *,
        limit: int,
        starting_after: str | None,
        order_id: str | None,
        status: str | None,
    ) -> RefundList:
        order_number = None
        if order_id is not None:
            order_number = parse_public_id(ORDER_PREFIX, order_id)
            if order_number is None:
                return RefundList(data=[], has_more=False)
        rows = await self.repository.page(
            limit=limit + 1,
            before_id=parse_cursor(REFUND_PREFIX, starting_after),
            order_id=order_number,
            status=status,
        )
        return RefundList(data=[refund_read(r) for r in rows[:limit]], has_more=len(rows) > limit)
