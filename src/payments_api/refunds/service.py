"""Admin refunds of pay-ins (orders).

An admin refund never holds a database transaction open across the Stripe call (the
flow shared with invoice refunds is :mod:`payments_api.refunds.two_phase`):

1. one transaction locks the order, checks what is still refundable and what the
   customer still holds, writes the ``pending`` refund, moves the amount
   ``available -> withdrawing`` (the hold) and writes the audit entry
   (:mod:`payments_api.refunds.reservation`). Refused requests write nothing;
2. Stripe is called with the idempotency key ``<namespace>:refund:{refund_id}``, so a
   retry after a timeout or a crash reaches the refund Stripe already made;
3. a second transaction applies Stripe's answer through
   :class:`~payments_api.refunds.settlement.RefundSettlement`, the same code the
   ``refund.*`` and ``charge.refunded`` events run.

The ledger moves only on Stripe's word: ``succeeded`` settles the hold (``withdrawing ->
stripe_balance``), ``failed``/``canceled`` releases it back to ``available``. Whichever
of the API response and the webhook comes first applies it; the other finds the refund
settled. Both lock the order row and then the refund row, and the cause key
``stripe:refund:{re_id}`` makes a second application impossible at the database anyway.

What a refund of an order means is its purpose's to say (``orders/purposes.py``, the
refund hooks): whether it may be refunded here (``refund_terms``: a job only once
completed), what is held (a top-up's whole amount, else the credit taken back), what
Stripe is asked besides (``stripe_refund_options``: a direct payment reverses its
transfer and fee), and where the money comes back from (``on_refunded``: the customer's
wallet for a top-up or a job, the platform's sales for a catalog order, the payee and the
fee for a direct payment, ``projects/direct_refunds.py``). Refunds made without this API
(the Stripe dashboard) are recorded from Stripe's events the same way, without a hold:
if the customer no longer holds the money, the shortfall is booked to the platform's
``adjustments`` and logged, because Stripe has already paid the money out.

Orders paid from the wallet are refunded to it at once (:mod:`payments_api.refunds.to_wallet`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.errors import EscrowNotFound
from payments_api.escrow.models import Escrow, EscrowFunding, EscrowStatus
from payments_api.escrow.repository import EscrowRepository
from payments_api.escrow.service import EscrowService
from payments_api.kit.idempotency import fingerprint
from payments_api.kit.pagination import parse_public_id, public_id
from payments_api.orders.errors import OrderNotFound
from payments_api.orders.purposes import PURPOSES, RefundTerms
from payments_api.orders.reads import ORDER_PREFIX
from payments_api.orders.refund_errors import (
    RefundCurrencyMismatch,
    RefundNotSupported,
    RefundToCardUnavailable,
)
from payments_api.orders.refund_models import Refund
from payments_api.orders.refund_repository import RefundRepository
from payments_api.orders.repository import OrderRepository
from payments_api.refunds.admin_request import (
    KEY_USED_FOR_ANOTHER,
    AdminRefundRequest,
    AdminRefunds,
    RefundAsk,
    RefundedPayment,
)
from payments_api.refunds.escrow_refunds import (
    ESCROW_PREFIX,
    escrow_refund_read,
    refund_wallet_escrow,
)
from payments_api.refunds.reads import REFUND_PREFIX, refund_read
from payments_api.refunds.reservation import reserve_order
from payments_api.refunds.schemas import RefundCreate, RefundRead
from payments_api.refunds.settlement import RefundSettlement
from payments_api.refunds.to_wallet import refund_to_wallet
from payments_api.refunds.two_phase import StripeRefundRequest
from payments_api.stripe.errors import PaymentProviderError, PaymentProviderUnavailable
from payments_api.users.models import User

log = logging.getLogger(__name__)


class RefundService(AdminRefunds[Refund]):
    """Admin refunds: reserve, ask Stripe, apply the answer (see the module docstring)."""

    public_prefix = REFUND_PREFIX

    async def read(self, refund: Refund) -> RefundRead:
        return refund_read(refund)

    async def refunded_at_once(self, ask: RefundAsk) -> RefundRead | None:
        """A job paid from the wallet: reversed back to the wallet now (``escrow_refunds``);
        None for anything else (a job paid by card is refunded through its funding
        order)."""
        body = ask.body
        if body.escrow_id is None:
            return None
        number = parse_public_id(ESCROW_PREFIX, body.escrow_id)
        async with self.sessionmaker.begin() as session:
            escrow = (
                await EscrowRepository(session).get(number, for_update=True) if number else None
            )
            if escrow is None:
                raise EscrowNotFound(f"No escrow {body.escrow_id!r}.")
            if escrow.funding == EscrowFunding.card.value:
                return None
            request = await AdminRefundRequest.of(session, ask)
            refund = await refund_wallet_escrow(session, escrow, request, body, now=self.now())
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

    async def reserve(self, ask: RefundAsk) -> Refund:
        if ask.body.escrow_id is not None:
            # A job paid by card: the refund of the order that paid it.
            ask = replace(ask, body=await self._funding_order_body(ask.body))
        body = ask.body
        order_number = parse_public_id(ORDER_PREFIX, body.order_id or "")
        async with self.sessionmaker.begin() as session:
            request = await AdminRefundRequest.of(session, ask)
            existing = await request.replayed(RefundRepository(session), KEY_USED_FOR_ANOTHER)
            if existing is not None:
                return existing
            order = None
            if order_number is not None:
                order = await OrderRepository(session).get(order_number)
            # The purpose's locks (a job's escrow) come before the order's.
            terms = (
                await PURPOSES.get(order.purpose).refund_terms(session, order)
                if order is not None
                else None
            )
            if order_number is not None:
                order = await OrderRepository(session).get(order_number, for_update=True)
            if order is None:
                raise OrderNotFound(f"No order {body.order_id!r}.")
            if body.currency is not None and body.currency != order.currency:
                raise RefundCurrencyMismatch(
                    f"Order {body.order_id} is in {order.currency}.", currency=order.currency
                )
            if terms is None:  # pragma: no cover - the order was read before its lock
                raise OrderNotFound(f"No order {body.order_id!r}.")
            if not terms.refundable:
                raise terms.refusal or RefundNotSupported(
                    f"Orders with purpose {order.purpose!r} cannot be refunded here yet.",
                    purpose=order.purpose,
                )
            if order.channel == "wallet":
                return await refund_to_wallet(session, order, request, body, now=self.now())
            return await reserve_order(
                session, order, request, requested=body.amount, force=body.force, terms=terms
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
                request = AdminRefundRequest(
                    actor_id=actor.id,
                    idempotency_key=key,
                    request_fingerprint=fingerprint({"escrow_id": escrow_id}),
                    request_id=request_id,
                    reason="requested_by_customer",
                    note=reason or "escrow cancelled before acceptance",
                )
                refund = await reserve_order(
                    session,
                    order,
                    request,
                    requested=min(result.escrow.hold_amount, order.amount - order.refunded_amount),
                    # The cancel put the money back in the customer's available balance:
                    # the refund is held from there.
                    terms=RefundTerms(from_wallet=True),
                )
            escrow = result.escrow
        if refund is not None and refund.status == "pending" and refund.stripe_refund_id is None:
            refund = await self.submit(refund.id)
        return escrow, refund

    def settlement(self, session: AsyncSession) -> RefundSettlement:
        return RefundSettlement(session, self.stripe, now=self.now)

    async def refunded_payment(self, session: AsyncSession, refund: Refund) -> RefundedPayment:
        order = await OrderRepository(session).get(refund.order_id)
        if order is None or order.stripe_payment_intent_id is None:  # pragma: no cover
            raise RuntimeError(f"refund {refund.id} has no payment to refund")
        options = await PURPOSES.get(order.purpose).stripe_refund_options(session, order)
        metadata = {"order_id": str(refund.order_id)}
        return RefundedPayment(order.stripe_payment_intent_id, metadata, options)

    async def before_stripe(self, refund: Refund, request: StripeRefundRequest) -> None:
        account = request.options.payee_account
        if account is not None and refund.payee_coverable is None:
            await self._read_coverable(refund, account)

    async def _read_coverable(self, refund: Refund, account: str) -> None:
        """What the payee's connected account holds (available + pending) in the refund's
        currency, read before Stripe is asked to reverse the transfer and kept on the
        refund. Unreadable (Stripe down): left unknown, and the payee is taken to cover."""
        try:
            balance = await self.stripe.retrieve_balance(stripe_account=account)
        except (PaymentProviderUnavailable, PaymentProviderError):
            log.warning("refund %s: the payee's balance could not be read", refund.id)
            return
        coverable = sum(
            entry.amount
            for entry in (*balance.available, *balance.pending)
            if entry.currency.lower() == refund.currency
        )
        async with self.sessionmaker.begin() as session:
            row = await RefundRepository(session).get(refund.id, for_update=True)
            if row is not None and row.payee_coverable is None:
                row.payee_coverable = coverable
        refund.payee_coverable = coverable

    async def stuck(self, session: AsyncSession, cutoff: datetime, limit: int) -> list[int]:
        # Admin refunds and cash-out parts.
        return await RefundRepository(session).stuck(cutoff, limit)
