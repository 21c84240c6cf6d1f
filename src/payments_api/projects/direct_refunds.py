"""What refunding a direct payment means (the ``direct`` purpose's refund hooks).

A direct payment (a destination charge with an application fee) is refunded at Stripe
with ``reverse_transfer`` and ``refund_application_fee``: the payee's connected account
gives back its share and the platform its fee, in the payment's proportions. No wallet
holds that money, so there is no hold; the ledger settles the refund as
``stripe_balance +amount`` (to the card), ``stripe_balance -payee_share`` (the transfer
reversal) and ``platform_fees -fee_share``, split by cumulative largest remainder
(``money.proportional_part``) so partial refunds add up to the payment's exact split.
When the payee's connected account held less than its share before Stripe was asked
(``payee_coverable``, read by refunds), the platform bears the difference (Stripe takes
the reversal anyway and the platform answers for the negative balance of an Express
account): a second transaction books it to ``adjustments``
(``refund:{id}:platform_cover``).

A direct payment made from the wallet is refunded to the wallet at once: the payee's
share comes from the payee's available (what they withdrew since is covered by the
platform, ``adjustments``) and the fee's share from the platform's fees.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind
from payments_api.ledger.shapes import move
from payments_api.ledger.take_back import post_taking_from_payee, take_back_postings
from payments_api.money import proportional_part
from payments_api.orders.models import Order
from payments_api.orders.purposes import RefundBooking, StripeRefundOptions, WalletRefundBooking
from payments_api.orders.reads import ORDER_PREFIX
from payments_api.projects.models import DirectPayment
from payments_api.projects.repository import DirectPaymentRepository

log = logging.getLogger(__name__)

REFUND_PREFIX = "rfd"


async def _payment(session: AsyncSession, order: Order) -> DirectPayment:
    payment = await DirectPaymentRepository(session).by_order(order.id, for_update=True)
    if payment is None:  # pragma: no cover - written with the order
        raise RuntimeError(f"direct order {order.id} has no payment row")
    return payment


def _platform(kind: AccountKind, currency: str) -> ledger_service.AccountRef:
    return ledger_service.AccountRef.platform(kind, currency)


async def stripe_options(session: AsyncSession, order: Order) -> StripeRefundOptions:
    payment = await DirectPaymentRepository(session).by_order(order.id)
    if payment is None:
        return StripeRefundOptions()
    return StripeRefundOptions(
        reverse_transfer=True,
        refund_application_fee=payment.application_fee_amount > 0,
        payee_account=payment.stripe_account_id,
    )


async def settle(booking: RefundBooking) -> None:
    """A destination charge's refund: the payee's share comes back by the transfer
    reversal, the fee's share from the platform's fees."""
    refund, ledger = booking.refund, booking.ledger
    payment = await _payment(booking.session, booking.order)
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
            ledger_service.PostingSpec(_platform(AccountKind.platform_fees, currency), -fee_share)
        )
    refund_public = public_id(REFUND_PREFIX, refund.id)
    await ledger.post(
        booking.refund_transaction(
            "direct_refund",
            postings,
            description=f"Refund {refund_public} of direct payment "
            f"{public_id(ORDER_PREFIX, refund.order_id)}",
            payment_intent=payment.stripe_payment_intent_id,
            payee_id=payment.payee_id,
            payee_share=payee_share,
            fee_share=fee_share,
        )
    )
    if not covered:
        return
    log.warning(
        "refund %s: the payee's connected account held %s of its %s %s share; the "
        "platform covers %s",
        refund.id,
        coverable,
        payee_share,
        currency,
        covered,
    )
    await ledger.post(
        booking.refund_transaction(
            "direct_refund_cover",
            move(covered, out_of=_platform(AccountKind.adjustments, currency), into=stripe_balance),
            step="platform_cover",
            description=f"Platform covers what the payee's account could not give "
            f"back for {refund_public}",
            payee_id=payment.payee_id,
            payee_coverable=coverable,
            covered=covered,
        )
    )


async def reverted(booking: RefundBooking) -> None:
    """A settled refund failed afterwards: the payment counts it no more."""
    refund = booking.refund
    if not (refund.payee_share or refund.fee_share):
        return
    payment = await DirectPaymentRepository(booking.session).by_order(
        refund.order_id, for_update=True
    )
    if payment is not None:
        payment.refunded_amount -= refund.amount
        payment.refunded_fee_amount -= refund.fee_share


async def refund_to_wallet(booking: WalletRefundBooking) -> None:
    refund = booking.refund
    currency, amount = refund.currency, refund.amount
    payment = await _payment(booking.session, booking.order)
    fee_share = proportional_part(
        amount, payment.amount, payment.application_fee_amount, payment.refunded_amount
    )
    payee_share = amount - fee_share
    payee_wallet = ledger_service.AccountRef.user(payment.payee_id, AccountKind.available, currency)

    def direct_back(covered: int) -> ledger_service.NewTransaction:
        return booking.transaction(
            take_back_postings(payee_wallet, payee_share, fee_share, covered),
            payee_id=payment.payee_id,
            payee_share=payee_share,
            fee_share=fee_share,
            platform_covered=covered,
        )

    covered, payee_available = await post_taking_from_payee(
        booking.session, payee_wallet, payee_share, direct_back
    )
    refund.payee_share, refund.fee_share = payee_share, fee_share
    refund.platform_covered, refund.payee_coverable = covered, max(0, payee_available)
    payment.refunded_amount += amount
    payment.refunded_fee_amount += fee_share
