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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.escrow.models import CaptureMethod, CaptureStatus, Escrow
from payments_api.escrow.service import EscrowService
from payments_api.installation import outgoing_keys
from payments_api.kit.clock import utcnow
from payments_api.orders.confirmation import PayInConfirmation
from payments_api.orders.models import Order
from payments_api.settings import Settings
from payments_api.stripe.errors import PaymentProviderError, PaymentProviderUnavailable
from payments_api.stripe.gateway import StripeGateway

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
    session: AsyncSession, settings: Settings, order: Order, intent: dict[str, Any]
) -> None:
    """``payment_intent.amount_capturable_updated``: the card holds the money."""
    escrow_id = _escrow_id(order)
    capturable = int(intent.get("amount_capturable") or 0)
    if escrow_id is None or capturable <= 0 or intent.get("status") != "requires_capture":
        return  # an older state of the intent (already captured or cancelled)
    if order.stripe_payment_intent_id is None:
        order.stripe_payment_intent_id = str(intent["id"])
    await EscrowService(session, settings).authorize(
        escrow_id=escrow_id,
        payment_intent_id=str(intent["id"]),
        amount=capturable,
        currency=str(intent["currency"]),
    )


async def apply_canceled(
    session: AsyncSession,
    stripe: StripeGateway,
    settings: Settings,
    order: Order,
    intent: dict[str, Any],
) -> None:
    """``payment_intent.canceled``: the authorization is gone (released by us, or
    expired after Stripe's capture window); the card was never charged."""
    escrow_id = _escrow_id(order)
    if escrow_id is None:
        return
    escrows = EscrowService(session, settings)
    stored = await escrows.repository.get(escrow_id)
    requested = stored is not None and stored.capture_status == (
        CaptureStatus.release_requested.value
    )
    # Stripe says ``automatic`` (or ``abandoned``) when it cancelled on its own.
    expired = not requested and intent.get("cancellation_reason") != "requested_by_customer"
    await escrows.authorization_canceled(
        escrow_id=escrow_id, payment_intent_id=str(intent["id"]), expired=expired
    )
    await PayInConfirmation(session, stripe, settings).fail(
        order,
        "expired" if expired else "failed",
        "authorization_expired" if expired else "authorization_released",
    )


async def apply_intent(
    session: AsyncSession,
    stripe: StripeGateway,
    settings: Settings,
    order: Order,
    intent: dict[str, Any],
) -> None:
    """Apply a PaymentIntent of a manual-capture escrow as Stripe last showed it."""
    status = intent.get("status")
    if status == "succeeded":
        await PayInConfirmation(session, stripe, settings).succeed(
            order,
            payment_intent_id=str(intent["id"]),
            amount=int(intent.get("amount_received") or 0),
            currency=str(intent["currency"]),
        )
    elif status == "canceled":
        await apply_canceled(session, stripe, settings, order, intent)
    elif status == "requires_capture":
        await apply_authorized(session, settings, order, intent)


class EscrowCaptures:
    """Asks Stripe for the capture or release an escrow waits on (see the module doc)."""

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

    async def submit(self, escrow_id: int) -> None:
        """Steps 2 and 3 for one escrow; a no-op unless a capture or release is asked.

        Stripe unavailable: left as it is, for the next try (same key). Stripe refusing
        a capture: the PaymentIntent is read to learn why (captured or cancelled
        meanwhile: that is applied; else ``capture_failed``, and accepting again asks
        anew under the next round's key)."""
        async with self.sessionmaker() as session:
            escrow = await session.get(Escrow, escrow_id)
        if escrow is None or escrow.payment_intent_id is None:
            return
        if escrow.capture_status not in IN_FLIGHT:
            return
        keys = await outgoing_keys(self.sessionmaker)
        intent_id = escrow.payment_intent_id
        try:
            if escrow.capture_status == CaptureStatus.capture_requested.value:
                assert escrow.capture_amount is not None  # noqa: S101 - set with the status
                intent = await self.stripe.capture_payment_intent(
                    intent_id,
                    amount_to_capture=escrow.capture_amount,
                    idempotency_key=keys.derive(
                        "escrow_capture", f"{escrow.id}-{escrow.capture_round}"
                    ),
                )
            else:
                intent = await self.stripe.cancel_payment_intent(
                    intent_id, idempotency_key=keys.derive("escrow_release", escrow.id)
                )
        except PaymentProviderUnavailable:
            log.warning(
                "escrow %s: Stripe unavailable for %s, will retry", escrow_id, escrow.capture_status
            )
            return
        except PaymentProviderError:
            known = await self._refused(escrow, intent_id)
            if known is None:
                return
            intent = known
        await self._apply(escrow_id, intent)

    async def _refused(self, escrow: Escrow, intent_id: str) -> dict[str, Any] | None:
        """Stripe refused the capture or cancel: what does the PaymentIntent say?"""
        try:
            intent = await self.stripe.retrieve_payment_intent(intent_id)
        except (PaymentProviderUnavailable, PaymentProviderError):
            return None  # unknown: the recovery asks again
        if intent.get("status") in ("succeeded", "canceled"):
            return intent
        if escrow.capture_status == CaptureStatus.capture_requested.value:
            async with self.sessionmaker.begin() as session:
                stored = await session.get(Escrow, escrow.id, with_for_update=True)
                if (
                    stored is not None
                    and stored.capture_status == CaptureStatus.capture_requested.value
                ):
                    log.warning("escrow %s: Stripe refused the capture", escrow.id)
                    stored.capture_status = CaptureStatus.capture_failed
                    stored.updated_at = self.now()
        return None

    async def _apply(self, escrow_id: int, intent: dict[str, Any]) -> None:
        async with self.sessionmaker.begin() as session:
            # The order is locked first, as the webhook handlers of the same intent lock
            # it (``PayInConfirmation.find``) before the escrow: the other order
            # deadlocked against a webhook arriving with the answer
            # (tests/orders/test_escrow_capture_race.py).
            order = await session.scalar(
                select(Order)
                .where(
                    Order.purpose == "escrow",
                    Order.reference["escrow_id"].as_integer() == escrow_id,
                    Order.stripe_payment_intent_id == str(intent["id"]),
                )
                .limit(1)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            if order is None:  # pragma: no cover - the authorization recorded it
                log.error("escrow %s: no order for %s", escrow_id, intent.get("id"))
                return
            await apply_intent(session, self.stripe, self.settings, order, intent)

    async def recover(self, *, limit: int = 50) -> int:
        """Captures and releases asked of Stripe with no answer applied (the process
        stopped between commit and answer, or Stripe was down): ask again."""
        cutoff = self.now() - RECOVER_AFTER
        async with self.sessionmaker() as session:
            stuck = list(
                await session.scalars(
                    select(Escrow.id)
                    .where(
                        Escrow.capture_status.in_(IN_FLIGHT),
                        Escrow.capture_requested_at < cutoff,
                    )
                    .order_by(Escrow.capture_requested_at)
                    .limit(limit)
                )
            )
        for escrow_id in stuck:
            try:
                await self.submit(escrow_id)
            except Exception:
                log.exception("escrow %s: capture recovery failed", escrow_id)
        return len(stuck)
