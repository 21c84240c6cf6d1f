"""Step 1 of a refund of an order paid by card: on the locked order, in the caller's
transaction, check what is still refundable and what the customer still holds, write the
``pending`` refund, hold its amount (``available -> withdrawing``: the customer can
neither spend nor withdraw money that is being refunded) and write the audit entry.
Refused requests write nothing. What is held is the order's purpose's to say
(``RefundTerms``): the whole amount when the pay-in credited the wallet, else the
credit the refund takes back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.audit.repository import AuditLogRepository
from payments_api.kit.amounts import AmountNotInSteps
from payments_api.kit.clock import utcnow
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.errors import InsufficientFunds
from payments_api.ledger.kinds import AccountKind
from payments_api.money import charge_step, largest_remainder
from payments_api.orders.models import Order
from payments_api.orders.purposes import RefundTerms
from payments_api.orders.reads import ORDER_PREFIX
from payments_api.orders.refund_errors import (
    CreditAlreadySpent,
    OrderNotRefundable,
    RefundExceedsAvailable,
)
from payments_api.orders.refund_models import Refund
from payments_api.orders.refund_repository import RefundRepository
from payments_api.refunds import metrics
from payments_api.refunds.admin_request import AdminRefundRequest
from payments_api.refunds.reads import REFUND_PREFIX
from payments_api.refunds.refund_ledger import hold_transaction, user_account
from payments_api.refunds.settlement import REFUNDABLE_STATUSES
from payments_api.refunds.two_phase import amount_to_refund
from payments_api.users.repository import UserRepository


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


def order_refund(order: Order, amount: int, *, status: str, origin: str, **columns: Any) -> Refund:
    """A new refund of ``amount`` of ``order``, to the customer who paid it, in its
    currency; ``columns`` are the rest of the row."""
    return Refund(
        order_id=order.id,
        user_id=order.user_id,
        amount=amount,
        currency=order.currency,
        status=status,
        origin=origin,
        **columns,
    )


def order_snapshot(order: Order, in_flight: int) -> dict[str, Any]:
    return {
        "id": public_id(ORDER_PREFIX, order.id),
        "status": order.status,
        "amount": order.amount,
        "refunded_amount": order.refunded_amount,
        "refundable": order.amount - order.refunded_amount - in_flight,
    }


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


async def reserve_order(
    session: AsyncSession,
    order: Order,
    request: AdminRefundRequest,
    *,
    requested: int | None,
    terms: RefundTerms,
    force: bool = False,
) -> Refund:
    """The checks and writes of step 1 on a locked order, in the caller's transaction.

    ``terms`` are the order's purpose's (``Purpose.refund_terms``): a pay-in that
    credited the wallet holds the whole refund from it, or the purpose moves it into the
    hold itself (``reverse_into_hold``: a completed job's settlement reversed)."""
    reverse = terms.reverse_into_hold
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
    if reverse is not None:
        # A reversed settlement stays reversed even when the card refund then fails
        # (the money waits in the customer's wallet): never reverse it twice.
        refundable = order.amount - await refunds.reversed_amount(order.id)
    amount = amount_to_refund(
        requested, refundable, order.currency, public_id(ORDER_PREFIX, order.id)
    )
    AmountNotInSteps.check(amount, order.currency, charge_step(order.currency), "Refunds")
    ledger = ledger_service.LedgerService(session)
    wallet = user_account(order.user_id, AccountKind.available, order.currency)
    credit = credit_to_take_back(order, order.refunded_amount + in_flight + amount)
    holds_wallet = terms.from_wallet and reverse is None
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
    refund = order_refund(
        order,
        amount,
        status="pending",
        origin="admin",
        hold_amount=amount if terms.from_wallet else credit,
        stripe_attempts=0,
        credit_amount=credit,
        forced=forced,
        **request.row_fields(),
    )
    added = await request.add_once(session, refund, refunds)
    if added is not refund:
        return added
    order.credit_taken_back_amount += credit
    if reverse is not None:
        await reverse(session, refund, order)
    elif refund.hold_amount:
        try:
            await ledger.post(
                hold_transaction(
                    refund,
                    refund.hold_amount,
                    description=f"Refund {public_id(REFUND_PREFIX, refund.id)} pending",
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
    await request.audit(
        session,
        public_id(REFUND_PREFIX, refund.id),
        before={
            "order": order_snapshot(order, in_flight),
            "customer_available": available,
        },
        after={
            "order": order_snapshot(order, in_flight + amount),
            "refund": {
                "id": public_id(REFUND_PREFIX, refund.id),
                "amount": amount,
                "currency": order.currency,
                "status": refund.status,
                "held_amount": refund.hold_amount,
            },
            "customer_available": None
            if available is None
            else available - (refund.hold_amount if reverse is None else 0),
            "credit_taken_back": credit,
            "forced": forced,
        },
    )
    if forced:
        await freeze_for_refund(session, refund, order, request_id=request.request_id)
    metrics.REFUNDS.labels(origin="admin", outcome="requested").inc()
    return refund
