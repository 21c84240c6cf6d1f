"""Card-funded escrows: Stripe's word on a payment (funding, authorization, its
release or expiry) and the capture asked for on acceptance."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from payments_api.escrow import authorization_ledger
from payments_api.escrow.errors import CaptureAmountInvalid, EscrowNotFound
from payments_api.escrow.fees import smallest_hold, split_for_hold
from payments_api.escrow.models import CaptureMethod, CaptureStatus, Escrow, EscrowStatus
from payments_api.escrow.posting import EscrowPosting, TransitionResult
from payments_api.escrow.views import ESCROW_PREFIX
from payments_api.events.types import EventType
from payments_api.jobs.queue import enqueue
from payments_api.kit.amounts import AmountNotInSteps
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import StoredTransaction
from payments_api.money import charge_step, major_to_minor, normalize_currency

log = logging.getLogger(__name__)

CAPTURE_JOB = "escrow.capture"
"""Job: ask Stripe again for an escrow's capture or release that has no answer yet."""
CAPTURE_RECOVERY_DELAY = timedelta(seconds=60)


class FundingOutcome(StrEnum):
    funded = "funded"
    """The payment moved stripe_balance -> the customer's escrow; the escrow is created."""
    already_funded = "already_funded"
    """This PaymentIntent funded the escrow before: nothing moved."""
    credited_to_wallet = "credited_to_wallet"
    """The escrow could not take this payment (cancelled meanwhile, funded by another
    payment, or a different amount/currency): it was credited to the customer's
    available balance instead, once, so no confirmed money is ever lost."""


@dataclass(frozen=True, slots=True)
class FundingResult:
    escrow: Escrow
    outcome: FundingOutcome
    transaction: StoredTransaction | None


class CardFunding(EscrowPosting):
    """The steps of an escrow paid by card, driven by Stripe's events."""

    async def fund_from_payment(
        self,
        *,
        escrow_id: int,
        payment_intent_id: str,
        amount: int,
        currency: str,
    ) -> FundingResult:
        """Apply Stripe's confirmation of a card payment for a card-funded escrow.

        For the pay-in webhook handler (``payment_intent.succeeded`` /
        ``checkout.session.completed`` with purpose ``escrow``), in its transaction.
        The money moves ``stripe_balance -> customer's escrow`` directly (never through
        available) under the cause key ``escrow_funding:{payment_intent_id}``, so a
        redelivered or concurrent event applies exactly once; the escrow becomes
        ``created`` and waits for the payee like a wallet-funded one.

        A payment the escrow cannot take (it was cancelled meanwhile, another payment
        funded it, or amount/currency differ from ``hold_amount``/``currency``) is
        credited to the customer's available balance instead, once, and reported as
        ``credited_to_wallet`` so the caller can decide to refund it.
        Raises ``EscrowNotFound`` for an unknown escrow id.
        """
        escrow = await self.repository.get(escrow_id, for_update=True)
        if escrow is None:
            raise EscrowNotFound(f"No escrow {public_id(ESCROW_PREFIX, escrow_id)}.")
        currency = normalize_currency(currency)
        manual = escrow.capture_method == CaptureMethod.manual.value
        if escrow.payment_intent_id == payment_intent_id and (
            not manual or escrow.capture_status == CaptureStatus.captured.value
        ):
            return FundingResult(escrow, FundingOutcome.already_funded, None)
        cause_key = f"escrow_funding:{payment_intent_id}"
        stripe_balance = ledger_service.AccountRef.platform(AccountKind.stripe_balance, currency)
        if manual:
            # The authorization's memo ends here; what was captured is funded below.
            await authorization_ledger.end_hold(
                self.ledger, escrow, payment_intent_id, outcome="captured", captured=amount
            )
            # An authorization captured in full or in part (never more than was held):
            # the escrow becomes what was captured, split again by the escrow's rates.
            fits = (
                escrow.status in (EscrowStatus.awaiting_payment, EscrowStatus.authorized)
                and escrow.payment_intent_id in (None, payment_intent_id)
                and 0 < amount <= (escrow.authorized_amount or escrow.hold_amount)
                and currency == escrow.currency
            )
        else:
            fits = (
                escrow.status == EscrowStatus.awaiting_payment
                and amount == escrow.hold_amount
                and currency == escrow.currency
            )
        if fits and manual and amount != escrow.hold_amount:
            self._resplit(escrow, amount)
        if fits:
            result = await self.ledger.post(
                ledger_service.NewTransaction(
                    type="escrow_funding",
                    cause_type=CauseType.stripe_event,
                    cause_key=cause_key,
                    description=f"Card payment into escrow {public_id(ESCROW_PREFIX, escrow.id)}",
                    metadata={"escrow_id": escrow.id, "payment_intent_id": payment_intent_id},
                    postings=[
                        ledger_service.PostingSpec(stripe_balance, -amount),
                        ledger_service.PostingSpec(
                            self._customer(escrow, AccountKind.escrow), amount
                        ),
                    ],
                )
            )
            accepted = escrow.capture_status == CaptureStatus.capture_requested.value
            escrow.status = EscrowStatus.created
            escrow.payment_intent_id = payment_intent_id
            escrow.funded_at = self.now()
            escrow.updated_at = self.now()
            if manual:
                escrow.capture_status = CaptureStatus.captured
            await self.session.flush()
            await self._emit(escrow, EventType.escrow_funded)
            if accepted:
                # The payee accepted and that asked for this capture: the acceptance
                # completes now that the money is here.
                await self._apply_accept(escrow)
                escrow.status = EscrowStatus.accepted
                escrow.accepted_at = self.now()
                await self.session.flush()
                await self._emit(escrow, EventType.escrow_accepted)
            return FundingResult(escrow, FundingOutcome.funded, result.transaction)
        log.warning(
            "escrow payment credited to the customer's wallet",
            extra={
                "escrow_id": escrow.id,
                "status": escrow.status,
                "payment_intent_id": payment_intent_id,
            },
        )
        result = await self.ledger.post(
            ledger_service.NewTransaction(
                type="escrow_funding_to_wallet",
                cause_type=CauseType.stripe_event,
                cause_key=cause_key,
                description=(
                    f"Card payment for escrow {public_id(ESCROW_PREFIX, escrow.id)} "
                    "that the escrow could not take"
                ),
                metadata={"escrow_id": escrow.id, "payment_intent_id": payment_intent_id},
                postings=[
                    ledger_service.PostingSpec(stripe_balance, -amount),
                    ledger_service.PostingSpec(
                        ledger_service.AccountRef.user(
                            escrow.customer_id, AccountKind.available, currency
                        ),
                        amount,
                    ),
                ],
            )
        )
        return FundingResult(escrow, FundingOutcome.credited_to_wallet, result.transaction)

    def _resplit(self, escrow: Escrow, hold: int) -> None:
        """A partial capture: the escrow's amounts become those of what was captured, by
        the rates captured at creation (``fees.split_for_hold``)."""
        parts = split_for_hold(
            hold,
            platform_fee_bps=escrow.platform_fee_bps,
            service_fee_bps=escrow.service_fee_bps,
        )
        escrow.price_amount = parts.price
        escrow.platform_fee_amount = parts.platform_fee
        escrow.service_fee_amount = parts.service_fee
        escrow.payee_amount = parts.payee_take
        escrow.hold_amount = parts.hold

    async def authorize(
        self, *, escrow_id: int, payment_intent_id: str, amount: int, currency: str
    ) -> Escrow | None:
        """Stripe holds the card's money for a manual-capture escrow
        (``payment_intent.amount_capturable_updated``): ``awaiting_payment ->
        authorized``, once. The ledger shows it as a memo (``authorization_ledger``),
        never as money: authorized money is nobody's balance until it is captured. Any
        other state (already authorized, captured, cancelled: an older or repeated
        event) is left as it is. Returns the escrow when it changed."""
        escrow = await self.repository.get(escrow_id, for_update=True)
        if escrow is None or escrow.capture_method != CaptureMethod.manual.value:
            return None
        if escrow.status != EscrowStatus.awaiting_payment or escrow.capture_status is not None:
            return None
        if normalize_currency(currency) != escrow.currency:
            log.warning(
                "authorization in another currency ignored",
                extra={"escrow_id": escrow.id, "payment_intent_id": payment_intent_id},
            )
            return None
        escrow.status = EscrowStatus.authorized
        escrow.capture_status = CaptureStatus.authorized
        escrow.authorized_amount = amount
        escrow.payment_intent_id = payment_intent_id
        escrow.updated_at = self.now()
        await self.session.flush()
        await authorization_ledger.record_hold(self.ledger, escrow, payment_intent_id, amount)
        await self._emit(escrow, EventType.escrow_authorized)
        return escrow

    async def authorization_canceled(
        self, *, escrow_id: int, payment_intent_id: str, expired: bool
    ) -> Escrow | None:
        """Stripe cancelled the authorization (``payment_intent.canceled``): released at
        our request, or expired after Stripe's capture window (``expired``). An escrow
        still waiting on it is cancelled (only the authorization's memo is reversed: no
        money was ever in the ledger); one we cancelled records the release. A captured
        escrow is untouched. Returns the escrow when it changed."""
        escrow = await self.repository.get(escrow_id, for_update=True)
        if escrow is None or escrow.capture_method != CaptureMethod.manual.value:
            return None
        if escrow.payment_intent_id not in (None, payment_intent_id):
            return None
        requested = escrow.capture_status == CaptureStatus.release_requested.value
        await authorization_ledger.end_hold(
            self.ledger,
            escrow,
            payment_intent_id,
            outcome="released" if requested or not expired else "expired",
        )
        if escrow.capture_status in (
            CaptureStatus.captured.value,
            CaptureStatus.released.value,
            CaptureStatus.expired.value,
        ):
            return None  # decided before: a repeated or late event
        now = self.now()
        cancelled_now = escrow.status in (EscrowStatus.awaiting_payment, EscrowStatus.authorized)
        if cancelled_now:
            escrow.status = EscrowStatus.cancelled
            escrow.cancelled_at = now
            escrow.cancel_reason = "authorization_expired" if expired else "authorization_released"
        elif escrow.status != EscrowStatus.cancelled:
            return None  # funded from another payment: this authorization is not its money
        escrow.capture_status = (
            CaptureStatus.released if requested or not expired else CaptureStatus.expired
        )
        escrow.payment_intent_id = escrow.payment_intent_id or payment_intent_id
        escrow.updated_at = now
        await self.session.flush()
        if cancelled_now:
            await self._emit(escrow, EventType.escrow_cancelled)
        await self._emit(escrow, EventType.escrow_authorization_released)
        return escrow

    async def request_capture(
        self, escrow: Escrow, amount_to_capture: int | None
    ) -> TransitionResult:
        """The payee accepts an authorized escrow: ask Stripe to capture
        ``amount_to_capture`` (default all that is authorized). Recorded here, asked of
        Stripe after the commit (``escrow.capture``: the request's background task, and
        the job queue if that one never answers); the escrow becomes ``accepted`` when
        Stripe confirms the capture (:meth:`fund_from_payment`). Asking again while a
        capture is asked for changes nothing."""
        authorized = escrow.authorized_amount or escrow.hold_amount
        if escrow.capture_status == CaptureStatus.capture_requested.value:
            return TransitionResult(escrow, changed=False)
        amount = authorized if amount_to_capture is None else amount_to_capture
        # A capture buys the job at the price it can pay: at least the minimum price
        # (with this escrow's rates), so its fees never round away to nothing.
        minimum = min(
            authorized,
            smallest_hold(
                major_to_minor(self.settings.escrow_min_major, escrow.currency),
                platform_fee_bps=escrow.platform_fee_bps,
                service_fee_bps=escrow.service_fee_bps,
            ),
        )
        if not minimum <= amount <= authorized:
            raise CaptureAmountInvalid(
                f"amount_to_capture must be between {minimum} (the minimum job price plus "
                f"its fee) and {authorized} (the authorization).",
                minimum=minimum,
                maximum=authorized,
            )
        AmountNotInSteps.check(amount, escrow.currency, charge_step(escrow.currency), "Captures")
        escrow.capture_status = CaptureStatus.capture_requested
        escrow.capture_amount = amount
        escrow.capture_round += 1
        escrow.capture_requested_at = self.now()
        escrow.updated_at = self.now()
        await self.session.flush()
        await self._enqueue_recovery(escrow)
        return TransitionResult(escrow, changed=False)

    async def _enqueue_recovery(self, escrow: Escrow) -> None:
        await enqueue(
            self.session,
            CAPTURE_JOB,
            str(escrow.id).encode(),
            delay=CAPTURE_RECOVERY_DELAY,
            dedupe_key=f"{CAPTURE_JOB}:{escrow.id}:{escrow.capture_status}:{escrow.capture_round}",
        )

    # --- reads ----------------------------------------------------------------------
