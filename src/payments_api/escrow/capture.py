"""Manual capture of escrows paid by card: Stripe's side of an authorization.

An escrow created by checkout with ``capture_method=manual`` is only authorized at the
card. Its money is never in the ledger's money accounts while it is authorized (not
available, not in escrow): the escrow shows it (``authorized_amount``,
``capture_status``) and the ledger posts it as a memo apart from captured money (the
customer's ``authorized`` account, ``escrow.authorization_ledger``).

The Stripe calls follow the service's two-phase pattern, with no transaction open
across them:

1. the transition's own transaction records what is asked (``capture_requested`` on
   acceptance, ``release_requested`` on cancel) and queues ``escrow.capture`` for the
   escrow, delayed, as the recovery if nobody gets Stripe's answer;
2. after the commit (the request's background task, or that job) :meth:`EscrowCaptures.submit`
   asks Stripe with a key derived from the escrow (``escrow_capture:{id}:{round}``,
   ``escrow_release:{id}``), so every retry reaches the same capture or cancel;
3. Stripe's answer is applied in a new short transaction by the same code the webhooks
   run (:func:`apply_intent`): ``payment_intent.succeeded`` funds the escrow with what
   was captured (and completes the acceptance), ``payment_intent.canceled`` cancels it
   or records the release. Webhooks stay the source of truth: whichever of the answer
   and the event comes first applies, the other finds it done.

Steps 2 and 3, and the sweep, run on the Stripe operation skeleton
(``kit/stripe_operation.py``); this module keeps what a capture's answer means.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.escrow.models import CaptureMethod, CaptureStatus, Escrow
from payments_api.escrow.service import EscrowService
from payments_api.kit.stripe_flow import StripeFlow
from payments_api.kit.stripe_operation import UNKNOWN, Attempt, StripeOperation, Unknown
from payments_api.orders.confirmation import PayInConfirmation
from payments_api.orders.models import Order
from payments_api.settings import Settings
from payments_api.stripe.errors import PaymentProviderError, PaymentProviderUnavailable
from payments_api.stripe.objects import PaymentIntent

log = logging.getLogger(__name__)

RECOVER_AFTER = timedelta(seconds=60)
IN_FLIGHT = (CaptureStatus.capture_requested.value, CaptureStatus.release_requested.value)


def _escrow_id(order: Order) -> int | None:
    raw = (order.reference or {}).get("escrow_id")
    return raw if isinstance(raw, int) else None


def is_manual_escrow_order(order: Order) -> bool:
    return order.purpose == "escrow" and (order.reference or {}).get("capture_method") == (
        CaptureMethod.manual.value
    )


async def apply_authorized(
    session: AsyncSession, settings: Settings, order: Order, intent: PaymentIntent
) -> None:
    """``payment_intent.amount_capturable_updated``: the card holds the money."""
    escrow_id = _escrow_id(order)
    capturable = intent.amount_capturable
    if escrow_id is None or capturable <= 0 or intent.status != "requires_capture":
        return  # an older state of the intent (already captured or cancelled)
    if order.stripe_payment_intent_id is None:
        order.stripe_payment_intent_id = intent.id
    await EscrowService(session, settings).authorize(
        escrow_id=escrow_id,
        payment_intent_id=intent.id,
        amount=capturable,
        currency=intent.currency,
    )


async def apply_canceled(
    confirmation: PayInConfirmation, order: Order, intent: PaymentIntent
) -> None:
    """``payment_intent.canceled``: the authorization is gone (released by us, or
    expired after Stripe's capture window); the card was never charged."""
    escrow_id = _escrow_id(order)
    if escrow_id is None:
        return
    escrows = EscrowService(confirmation.session, confirmation.settings)
    stored = await escrows.repository.get(escrow_id)
    requested = stored is not None and stored.capture_status == (
        CaptureStatus.release_requested.value
    )
    # Stripe says ``automatic`` (or ``abandoned``) when it cancelled on its own.
    expired = not requested and intent.cancellation_reason != "requested_by_customer"
    await escrows.authorization_canceled(
        escrow_id=escrow_id, payment_intent_id=intent.id, expired=expired
    )
    await confirmation.fail(
        order,
        "expired" if expired else "failed",
        "authorization_expired" if expired else "authorization_released",
    )


async def apply_intent(
    confirmation: PayInConfirmation, order: Order, intent: PaymentIntent
) -> None:
    """Apply a PaymentIntent of a manual-capture escrow as Stripe last showed it."""
    status = intent.status
    if status == "succeeded":
        await confirmation.succeed(
            order,
            payment_intent_id=intent.id,
            amount=intent.amount_received,
            currency=intent.currency,
        )
    elif status == "canceled":
        await apply_canceled(confirmation, order, intent)
    elif status == "requires_capture":
        await apply_authorized(confirmation.session, confirmation.settings, order, intent)


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """What an escrow in flight asks of Stripe, read when the attempt is claimed."""

    escrow_id: int
    payment_intent_id: str
    capture: bool
    """True: capture ``amount``; False: release (cancel) the authorization."""
    amount: int | None


class EscrowCaptures(StripeFlow, StripeOperation[None, CaptureRequest, PaymentIntent]):
    """Asks Stripe for the capture or release an escrow waits on (see the module doc),
    on the Stripe operation skeleton. Its recovery is the job queued with the request
    (``escrow.service``) and the sweep (:meth:`recover`); an unknown outcome leaves the
    escrow in flight for them."""

    name = "escrow"
    sweep_limit = 50

    async def submit(self, escrow_id: int) -> None:
        """Steps 2 and 3 for one escrow; a no-op unless a capture or release is asked.

        Stripe unavailable: left as it is, for the next try (same key). Stripe refusing
        a capture: the PaymentIntent is read to learn why (captured or cancelled
        meanwhile: that is applied; else ``capture_failed``, and accepting again asks
        anew under the next round's key)."""
        await self.run(escrow_id)

    async def claim(
        self, session: AsyncSession, row_id: int
    ) -> tuple[None, Attempt[CaptureRequest] | None]:
        escrow = await session.get(Escrow, row_id)
        if escrow is None or escrow.payment_intent_id is None:
            return None, None
        if escrow.capture_status not in IN_FLIGHT:
            return None, None
        if escrow.capture_status == CaptureStatus.capture_requested.value:
            assert escrow.capture_amount is not None  # noqa: S101 - set with the status
            request = CaptureRequest(
                escrow.id, escrow.payment_intent_id, True, escrow.capture_amount
            )
            return None, Attempt(request, "escrow_capture", f"{escrow.id}-{escrow.capture_round}")
        request = CaptureRequest(escrow.id, escrow.payment_intent_id, False, None)
        return None, Attempt(request, "escrow_release", escrow.id)

    async def call(self, request: CaptureRequest, idempotency_key: str) -> PaymentIntent | Unknown:
        try:
            if request.capture:
                assert request.amount is not None  # noqa: S101 - a capture has its amount
                return await self.stripe.capture_payment_intent(
                    request.payment_intent_id,
                    amount_to_capture=request.amount,
                    idempotency_key=idempotency_key,
                )
            return await self.stripe.cancel_payment_intent(
                request.payment_intent_id, idempotency_key=idempotency_key
            )
        except PaymentProviderUnavailable:
            log.warning(
                "escrow %s: Stripe unavailable for %s, will retry",
                request.escrow_id,
                "capture_requested" if request.capture else "release_requested",
            )
            return UNKNOWN
        except PaymentProviderError:
            known = await self._refused(request)
            return UNKNOWN if known is None else known

    async def _refused(self, request: CaptureRequest) -> PaymentIntent | None:
        """Stripe refused the capture or cancel: what does the PaymentIntent say?"""
        try:
            intent = await self.stripe.retrieve_payment_intent(request.payment_intent_id)
        except (PaymentProviderUnavailable, PaymentProviderError):
            return None  # unknown: the recovery asks again
        if intent.status in ("succeeded", "canceled"):
            return intent
        if request.capture:
            async with self.sessionmaker.begin() as session:
                stored = await session.get(Escrow, request.escrow_id, with_for_update=True)
                if (
                    stored is not None
                    and stored.capture_status == CaptureStatus.capture_requested.value
                ):
                    log.warning("escrow %s: Stripe refused the capture", request.escrow_id)
                    stored.capture_status = CaptureStatus.capture_failed
                    stored.updated_at = self.now()
        return None

    async def settle(self, session: AsyncSession, row_id: int, answer: PaymentIntent) -> None:
        # The order is locked first, as the webhook handlers of the same intent lock
        # it (``PayInConfirmation.find``) before the escrow: the other order
        # deadlocked against a webhook arriving with the answer
        # (tests/orders/test_escrow_capture_race.py).
        order = await session.scalar(
            select(Order)
            .where(
                Order.purpose == "escrow",
                Order.reference["escrow_id"].as_integer() == row_id,
                Order.stripe_payment_intent_id == answer.id,
            )
            .limit(1)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if order is None:  # pragma: no cover - the authorization recorded it
            log.error("escrow %s: no order for %s", row_id, answer.id)
            return
        await apply_intent(PayInConfirmation(session, self.stripe, self.settings), order, answer)

    async def unknown(
        self, session: AsyncSession, row_id: int, attempt: Attempt[CaptureRequest]
    ) -> None:
        """Left in flight: the queued job or the sweep asks again."""

    async def due(self, session: AsyncSession, now: datetime, limit: int) -> list[int]:
        """Captures and releases asked of Stripe with no answer applied (the process
        stopped between commit and answer, or Stripe was down)."""
        return list(
            await session.scalars(
                select(Escrow.id)
                .where(
                    Escrow.capture_status.in_(IN_FLIGHT),
                    Escrow.capture_requested_at < now - RECOVER_AFTER,
                )
                .order_by(Escrow.capture_requested_at)
                .limit(limit)
            )
        )
