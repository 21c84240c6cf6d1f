"""Escrow: a job a customer pays for up front, held until it is completed or cancelled.

State machine (docs/escrow.md has the money table)::

    awaiting_payment --fund_from_payment--> created      (card funding only)
    awaiting_payment --cancel-------------> cancelled    (nothing was paid)
    awaiting_payment --authorize----------> authorized   (capture_method=manual)
    authorized --accept: capture asked, fund_from_payment on Stripe's word--> accepted
    authorized --fund_from_payment (captured without acceptance)----------> created
    authorized --cancel, or authorization_canceled (expiry)---------------> cancelled
    created  --accept--> accepted --complete--> completed
    created  --cancel--> cancelled
    accepted --cancel--> cancelled

Every transition runs in the caller's database transaction and first locks the escrow
row, so concurrent transitions of one escrow run one after the other and exactly one of
them moves money: an accept or complete by whoever may ask for it is one conditional
``UPDATE ... WHERE status = ... RETURNING`` (the settlement path), anything else
``SELECT ... FOR UPDATE`` and checks under the lock. Each money movement is a ledger
transaction whose cause key is derived from the escrow id and the transition
(``escrow:{id}:accept``), so even a repeated transition can never move money twice.
Asking for the transition that already happened (a second "complete") is a no-op that
returns the escrow as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import Rider
from payments_api.earnings import service as earnings_service
from payments_api.earnings.models import EarningSource
from payments_api.escrow import authorization_ledger
from payments_api.escrow.errors import (
    CaptureAmountInvalid,
    CaptureUnavailable,
    EscrowActionForbidden,
    EscrowAmountTooLarge,
    EscrowAmountTooSmall,
    EscrowInvalidTransition,
    EscrowNotFound,
    PayeeNotFound,
    SelfOffer,
)
from payments_api.escrow.fees import (
    smallest_hold,
    smallest_price_with_fees,
    split,
    split_for_hold,
)
from payments_api.escrow.models import (
    CaptureMethod,
    CaptureStatus,
    Escrow,
    EscrowFunding,
    EscrowStatus,
)
from payments_api.escrow.repository import EscrowRepository
from payments_api.escrow.schemas import EscrowCreate, EscrowList, EscrowRead
from payments_api.events.outbox import StagedEvent, emit_staged, stage
from payments_api.events.types import EventType
from payments_api.jobs.queue import enqueue
from payments_api.kit.amounts import AmountNotInSteps
from payments_api.kit.clock import utcnow
from payments_api.kit.idempotency import IdempotencyKeyReused, fingerprint
from payments_api.kit.pagination import parse_cursor, parse_public_id, public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import StoredTransaction
from payments_api.money import MAX_MINOR_AMOUNT, charge_step, major_to_minor, normalize_currency
from payments_api.projects.direct import PROJECT_PREFIX, SESSION_PREFIX
from payments_api.projects.errors import ProjectNotFound, SessionNotFound
from payments_api.projects.repository import ProjectRepository
from payments_api.settings import Settings
from payments_api.users.models import User
from payments_api.users.repository import UserRepository

log = logging.getLogger(__name__)

ESCROW_PREFIX = "esc"
CAPTURE_JOB = "escrow.capture"
"""Job: ask Stripe again for an escrow's capture or release that has no answer yet."""
CAPTURE_RECOVERY_DELAY = timedelta(seconds=60)
Clock = Callable[[], datetime]


def minimum_price(settings: Settings, currency: str) -> int:
    """The smallest job price in ``currency``, in minor units.

    ``PAYMENTS_ESCROW_MIN_MAJOR`` of the major unit (1.00 usd, 1 jpy, 1.000 kwd by
    default), raised where needed so that each configured fee takes at least one minor
    unit: an escrow always pays the fees its rates promise, never a rounded-away zero.
    """
    return max(
        major_to_minor(settings.escrow_min_major, currency),
        smallest_price_with_fees(settings.escrow_platform_fee_bps, settings.escrow_service_fee_bps),
    )


class EscrowAction(StrEnum):
    accept = "accept"
    complete = "complete"
    cancel = "cancel"


_TARGET = {
    EscrowAction.accept: EscrowStatus.accepted,
    EscrowAction.complete: EscrowStatus.completed,
    EscrowAction.cancel: EscrowStatus.cancelled,
}
_ALLOWED_FROM: dict[EscrowAction, frozenset[EscrowStatus]] = {
    EscrowAction.accept: frozenset({EscrowStatus.created}),
    EscrowAction.complete: frozenset({EscrowStatus.accepted}),
    EscrowAction.cancel: frozenset(
        {
            EscrowStatus.awaiting_payment,
            EscrowStatus.authorized,
            EscrowStatus.created,
            EscrowStatus.accepted,
        }
    ),
}


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


@dataclass(frozen=True, slots=True)
class TransitionResult:
    escrow: Escrow
    changed: bool
    """False when the escrow was already in the requested state (a no-op)."""
    emitted: bool = False
    """The transition's event was written already (with its ledger posting)."""


def is_admin(user: User) -> bool:
    return "admin" in (user.roles or [])


def escrow_read(escrow: Escrow, viewer: User | None) -> EscrowRead:
    """The escrow as ``viewer`` may see it: each party sees its own side of the money.
    No viewer is the whole escrow (admins, and outgoing events: the event feed of a
    party hides the other side again)."""
    admin = viewer is None or is_admin(viewer)
    customer_side = admin or (viewer is not None and viewer.id == escrow.customer_id)
    payee_side = admin or (viewer is not None and viewer.id == escrow.payee_id)
    return EscrowRead(
        id=public_id(ESCROW_PREFIX, escrow.id),
        status=EscrowStatus(escrow.status),
        funding=EscrowFunding(escrow.funding),
        capture_method=CaptureMethod(escrow.capture_method),
        capture_status=CaptureStatus(escrow.capture_status) if escrow.capture_status else None,
        authorized_amount=escrow.authorized_amount if customer_side else None,
        customer_id=escrow.customer_id,
        payee_id=escrow.payee_id,
        amount=escrow.price_amount,
        currency=escrow.currency,
        platform_fee_bps=escrow.platform_fee_bps if customer_side else None,
        platform_fee_amount=escrow.platform_fee_amount if customer_side else None,
        hold_amount=escrow.hold_amount if customer_side else None,
        service_fee_bps=escrow.service_fee_bps if payee_side else None,
        service_fee_amount=escrow.service_fee_amount if payee_side else None,
        payee_amount=escrow.payee_amount if payee_side else None,
        keeps_platform_fee_on_cancel=escrow.keeps_platform_fee_on_cancel,
        reference=escrow.reference,
        project_id=escrow.project_id,
        session_id=escrow.session_id,
        description=escrow.description,
        cancel_reason=escrow.cancel_reason,
        created_at=escrow.created_at,
        funded_at=escrow.funded_at,
        accepted_at=escrow.accepted_at,
        completed_at=escrow.completed_at,
        cancelled_at=escrow.cancelled_at,
    )


def parse_escrow_id(value: str) -> int:
    """``esc_12`` -> 12; anything else is a 404 (it cannot name an escrow)."""
    parsed = parse_public_id(ESCROW_PREFIX, value)
    if parsed is None:
        raise EscrowNotFound(f"No escrow {value!r}.")
    return parsed


def _cause(escrow: Escrow, step: str) -> str:
    return f"escrow:{escrow.id}:{step}"


_EVENT = {
    EscrowAction.accept: EventType.escrow_accepted,
    EscrowAction.complete: EventType.escrow_completed,
    EscrowAction.cancel: EventType.escrow_cancelled,
}


class EscrowService:
    def __init__(self, session: AsyncSession, settings: Settings, *, now: Clock = utcnow) -> None:
        self.session = session
        self.settings = settings
        self.now = now
        self.repository = EscrowRepository(session)
        self.users = UserRepository(session)
        self.ledger = ledger_service.LedgerService(session)
        self.earnings = earnings_service.EarningsService(
            session, now=now, default_timezone=settings.earnings_default_timezone
        )

    # --- creation -------------------------------------------------------------------

    async def create(
        self,
        customer: User,
        body: EscrowCreate,
        *,
        idempotency_key: str | None,
        funding: EscrowFunding = EscrowFunding.wallet,
        capture_method: CaptureMethod = CaptureMethod.automatic,
    ) -> tuple[Escrow, bool]:
        """Create an escrow; returns it and whether it was a replay of ``idempotency_key``.

        Wallet funding moves P + platform fee from the customer's available balance in
        ``body.currency`` into their escrow account now (``escrow:{id}:hold``); an
        available balance that does not cover it raises ``InsufficientFunds`` (402) and,
        with the caller's transaction rolled back, nothing is written.

        Card funding (for checkout ``purpose=escrow``) moves no money: the escrow waits
        in ``awaiting_payment`` for :meth:`fund_from_payment`. Charge the customer
        ``escrow.hold_amount`` in ``escrow.currency`` and put ``escrow.id`` in the
        payment's metadata. With ``capture_method=manual`` the card is only authorized:
        :meth:`authorize` records it, acceptance captures it.
        """
        if capture_method is CaptureMethod.manual and funding is not EscrowFunding.card:
            raise CaptureUnavailable("Only an escrow paid by card can be authorized only.")
        if body.payee_id == customer.id:
            raise SelfOffer("You cannot offer a job to yourself.")
        if body.project_id is not None or body.session_id is not None:
            await self._check_project(body)
        minimum = minimum_price(self.settings, body.currency)
        if body.amount < minimum:
            await self._check_payee(body.payee_id)  # an unknown payee is still the 404
            raise EscrowAmountTooSmall(
                f"Job prices in {body.currency} start at {minimum} minor units.",
                minimum=minimum,
            )
        parts = split(
            body.amount,
            platform_fee_bps=self.settings.escrow_platform_fee_bps,
            service_fee_bps=self.settings.escrow_service_fee_bps,
        )
        if funding is EscrowFunding.card:
            # The card is charged the hold (price plus platform fee) in one payment.
            AmountNotInSteps.check(
                parts.hold, body.currency, charge_step(body.currency), "Card payments"
            )
        if parts.hold > MAX_MINOR_AMOUNT:
            await self._check_payee(body.payee_id)  # an unknown payee is still the 404
            raise EscrowAmountTooLarge(
                f"The amount plus the platform fee ({parts.hold}) exceeds {MAX_MINOR_AMOUNT}."
            )
        request_fingerprint = fingerprint(
            {
                **body.model_dump(mode="json"),
                "funding": funding,
                # Only named when not the default: fingerprints of earlier rows still match.
                **(
                    {"capture_method": capture_method}
                    if capture_method.value != "automatic"
                    else {}
                ),
            }
        )
        now = self.now()
        escrow = await self.repository.insert(
            {
                "customer_id": customer.id,
                "payee_id": body.payee_id,
                "status": (
                    EscrowStatus.created
                    if funding is EscrowFunding.wallet
                    else EscrowStatus.awaiting_payment
                ).value,
                "funding": funding.value,
                "currency": body.currency,
                "price_amount": parts.price,
                "platform_fee_bps": self.settings.escrow_platform_fee_bps,
                "service_fee_bps": self.settings.escrow_service_fee_bps,
                "platform_fee_amount": parts.platform_fee,
                "service_fee_amount": parts.service_fee,
                "payee_amount": parts.payee_take,
                "hold_amount": parts.hold,
                "keeps_platform_fee_on_cancel": self.settings.escrow_keep_platform_fee_on_cancel,
                "reference": body.reference,
                "project_id": body.project_id,
                "session_id": body.session_id,
                "description": body.description,
                "creation_key": idempotency_key,
                "creation_fingerprint": request_fingerprint,
                "funded_at": now if funding is EscrowFunding.wallet else None,
                "capture_method": capture_method.value,
            }
        )
        if escrow is None:
            # The insert checked the payee itself (one round trip less): nothing was
            # written for a payee that is unknown or lacks the role, or because this
            # customer used the creation key before. The payee answer comes first, as
            # when it was checked before inserting.
            await self._check_payee(body.payee_id)
            existing = await self.repository.get_by_creation_key(customer.id, idempotency_key or "")
            if existing is None:  # pragma: no cover - the conflict guarantees the row
                raise RuntimeError("escrow creation key conflicted but the row is missing")
            if existing.creation_fingerprint != request_fingerprint:
                raise IdempotencyKeyReused("This Idempotency-Key created a different escrow.")
            return existing, True
        if funding is EscrowFunding.wallet:
            # The event goes with the hold's postings (one round trip less).
            held = await self._post(
                escrow,
                "hold",
                "escrow_hold",
                [
                    (self._customer(escrow, AccountKind.available), -parts.hold),
                    (self._customer(escrow, AccountKind.escrow), parts.hold),
                ],
                initiated_by=customer.id,
                event=self._staged(escrow, EventType.escrow_funded),
            )
            if held is None:  # pragma: no cover - a hold is never zero
                await self._emit(escrow, EventType.escrow_funded)
        return escrow, False

    async def _check_project(self, body: EscrowCreate) -> None:
        """A job may name the payee's own project (and one of its sessions) only: the
        earnings of another payee's project are not the customer's to add to. Someone
        else's project is answered like a missing one."""
        repository = ProjectRepository(self.session)
        number = parse_public_id(PROJECT_PREFIX, body.project_id or "")
        project = await repository.get(number) if number is not None else None
        if project is None or project.owner_id != body.payee_id:
            raise ProjectNotFound(f"The payee has no project {body.project_id!r}.")
        if body.session_id is not None:
            session_number = parse_public_id(SESSION_PREFIX, body.session_id)
            window = (
                await repository.get_session(project.id, session_number)
                if session_number is not None
                else None
            )
            if window is None:
                raise SessionNotFound(f"The project has no session {body.session_id!r}.")

    async def _check_payee(self, payee_id: str) -> None:
        payee = await self.users.get(payee_id)
        if payee is None or "payee" not in (payee.roles or []):
            # Unknown users and users without the payee role get the same answer.
            raise PayeeNotFound(f"No payee {payee_id!r}.", payee_id=payee_id)

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

    async def get(self, escrow_id: int, viewer: User) -> Escrow:
        escrow = await self.repository.get(escrow_id)
        if escrow is None or not self._visible(escrow, viewer):
            raise EscrowNotFound(f"No escrow {public_id(ESCROW_PREFIX, escrow_id)}.")
        return escrow

    async def page(
        self,
        viewer: User,
        *,
        limit: int,
        starting_after: str | None,
        role: str | None,
        status: EscrowStatus | None,
    ) -> EscrowList:
        rows = await self.repository.page(
            viewer.id,
            role=role,
            status=status.value if status else None,
            before_id=parse_cursor(ESCROW_PREFIX, starting_after),
            limit=limit + 1,
        )
        return EscrowList(
            data=[escrow_read(row, viewer) for row in rows[:limit]],
            has_more=len(rows) > limit,
        )

    # --- transitions ----------------------------------------------------------------

    async def accept(
        self, escrow_id: int, actor: User, *, amount_to_capture: int | None = None
    ) -> TransitionResult:
        """The payee accepts: the platform fee moves escrow -> platform_fees. An escrow
        paid by authorization is captured first (:meth:`request_capture`)."""
        return await self._transition(
            escrow_id, actor, EscrowAction.accept, amount_to_capture=amount_to_capture
        )

    async def complete(self, escrow_id: int, actor: User) -> TransitionResult:
        """The customer (or an admin) completes: the service fee moves escrow ->
        platform_fees and the payee's take escrow -> payee available; the payee's
        earnings entry is written in the same transaction."""
        return await self._transition(escrow_id, actor, EscrowAction.complete)

    async def cancel(
        self,
        escrow_id: int,
        actor: User,
        *,
        reason: str | None = None,
        expected_status: EscrowStatus | None = None,
    ) -> TransitionResult:
        """Cancel. Before acceptance everything held goes back to the customer's
        available balance; after acceptance the price does, and the platform fee is kept
        or refunded as the escrow's captured policy says."""
        return await self._transition(
            escrow_id, actor, EscrowAction.cancel, reason=reason, expected_status=expected_status
        )

    async def _emit(self, escrow: Escrow, type: EventType) -> None:
        await emit_staged(self.session, self._staged(escrow, type))

    @staticmethod
    def _staged(escrow: Escrow, type: EventType) -> StagedEvent:
        """The escrow's event, with the escrow as it is now (the admin's view)."""
        return stage(
            type,
            escrow_read(escrow, None),
            change_key=f"escrow:{escrow.id}:{type.value.partition('.')[2]}",
            user_ids=[escrow.customer_id, escrow.payee_id],
        )

    async def _transition(
        self,
        escrow_id: int,
        actor: User,
        action: EscrowAction,
        *,
        reason: str | None = None,
        expected_status: EscrowStatus | None = None,
        amount_to_capture: int | None = None,
    ) -> TransitionResult:
        result = await self._transition_once(
            escrow_id,
            actor,
            action,
            reason=reason,
            expected_status=expected_status,
            amount_to_capture=amount_to_capture,
        )
        if result.changed and not result.emitted:
            await self._emit(result.escrow, _EVENT[action])
        return result

    async def _transition_once(
        self,
        escrow_id: int,
        actor: User,
        action: EscrowAction,
        *,
        reason: str | None,
        expected_status: EscrowStatus | None,
        amount_to_capture: int | None = None,
    ) -> TransitionResult:
        if action is not EscrowAction.cancel and amount_to_capture is None:
            fast = await self._transition_in_one_statement(escrow_id, actor, action)
            if fast is not None:
                return fast
        # The locked way: cancels, and any accept or complete the one-statement update
        # did not match, to say why (404, 403, 409) or that it already happened (no-op).
        escrow = await self.repository.get(escrow_id, for_update=True)
        if escrow is None or not self._visible(escrow, actor):
            raise EscrowNotFound(f"No escrow {public_id(ESCROW_PREFIX, escrow_id)}.")
        if not self._may_request(action, escrow, actor):
            raise EscrowActionForbidden(f"You may not {action.value} this escrow.")
        current = EscrowStatus(escrow.status)
        target = _TARGET[action]
        if action is EscrowAction.accept and current is EscrowStatus.authorized:
            return await self.request_capture(escrow, amount_to_capture)
        if amount_to_capture is not None:
            raise CaptureUnavailable(
                "amount_to_capture applies only to an escrow paid by authorization that "
                "is still authorized.",
                current_status=current.value,
            )
        if current is target:
            return TransitionResult(escrow, changed=False)
        if current not in _ALLOWED_FROM[action] or (
            expected_status is not None and current is not expected_status
        ):
            raise EscrowInvalidTransition(
                f"Cannot {action.value} an escrow that is {current.value}.",
                current_status=current.value,
                action=action.value,
            )
        if (
            action is EscrowAction.cancel
            and escrow.capture_status == CaptureStatus.capture_requested.value
        ):
            raise CaptureUnavailable(
                "The payee accepted and the card payment is being captured; cancel once "
                "the escrow is accepted.",
                current_status=current.value,
            )
        if action is EscrowAction.cancel and not self._may_cancel_now(escrow, actor, current):
            raise EscrowActionForbidden(
                f"You may not cancel an escrow that is {current.value}.",
                current_status=current.value,
            )
        now = self.now()
        if action is EscrowAction.accept:
            await self._apply_accept(escrow)
            escrow.accepted_at = now
        elif action is EscrowAction.complete:
            await self._apply_complete(escrow, now, actor)
            escrow.completed_at = now
            escrow.completed_by = actor.id
        else:
            await self._apply_cancel(escrow, current)
            escrow.cancelled_at = now
            escrow.cancelled_by = actor.id
            escrow.cancel_reason = reason
        escrow.status = target
        escrow.updated_at = now
        await self.session.flush()
        return TransitionResult(escrow, changed=True)

    async def _transition_in_one_statement(
        self, escrow_id: int, actor: User, action: EscrowAction
    ) -> TransitionResult | None:
        """Accept or complete with one conditional UPDATE (status, who may ask) instead
        of a locked load plus a flush; None when it matched nothing.

        The UPDATE takes the row lock the locked way takes, before any money moves, so
        concurrent transitions of one escrow still run one after the other and only the
        first matches. The escrow joins the session only once its money has moved, so a
        failed posting leaves no transitioned escrow behind in the session.
        """
        now = self.now()
        if action is EscrowAction.accept:
            escrow = await self.repository.accept(escrow_id, actor_id=actor.id, now=now)
            if escrow is None:
                return None
            # The row the UPDATE returned is the escrow as it ends: its event can go
            # with the posting (one round trip less), if a posting is made.
            emitted = await self._apply_accept(escrow, self._staged(escrow, _EVENT[action]))
        else:
            escrow = await self.repository.complete(
                escrow_id, actor_id=actor.id, admin=is_admin(actor), now=now
            )
            if escrow is None:
                return None
            emitted = await self._apply_complete(
                escrow, now, actor, self._staged(escrow, _EVENT[action])
            )
        return TransitionResult(self.repository.attach(escrow), changed=True, emitted=emitted)

    async def _apply_accept(self, escrow: Escrow, event: StagedEvent | None = None) -> bool:
        """Post the platform fee (with ``event``, if any); whether ``event`` was written
        (not when there was nothing to post)."""
        transaction = await self._post(
            escrow,
            "accept",
            "escrow_platform_fee",
            [
                (self._customer(escrow, AccountKind.escrow), -escrow.platform_fee_amount),
                (self._fees(escrow), escrow.platform_fee_amount),
            ],
            event=event,
        )
        return event is not None and transaction is not None

    async def _apply_complete(
        self, escrow: Escrow, now: datetime, actor: User, event: StagedEvent | None = None
    ) -> bool:
        """Post the settlement (with ``event``, if any) and record the payee's earning
        (in the posting's statement); whether ``event`` was written (not when there was
        nothing to post)."""
        # The customer settling their own job moves their money out: a frozen wallet
        # refuses it (in the ledger). An admin settling it is an admin action.
        customer_acts = actor.id == escrow.customer_id
        earning = earnings_service.NewEarning(
            payee_id=escrow.payee_id,
            source=EarningSource.escrow,
            source_id=public_id(ESCROW_PREFIX, escrow.id),
            amount=escrow.payee_amount,
            currency=escrow.currency,
            reference=escrow.reference,
            project_id=escrow.project_id,
            session_id=escrow.session_id,
            escrow_id=escrow.id,
            earned_at=now,
        )
        transaction = await self._post(
            escrow,
            "complete",
            "escrow_settlement",
            [
                (self._customer(escrow, AccountKind.escrow), -escrow.price_amount),
                (self._fees(escrow), escrow.service_fee_amount),
                (
                    ledger_service.AccountRef.user(
                        escrow.payee_id, AccountKind.available, escrow.currency
                    ),
                    escrow.payee_amount,
                ),
            ],
            initiated_by=escrow.customer_id if customer_acts else None,
            event=event,
            riders=[self.earnings.record_with_posting(earning)],
        )
        if transaction is None:  # pragma: no cover - a settlement always posts
            await self.earnings.record(earning)
        return event is not None and transaction is not None

    async def _apply_cancel(self, escrow: Escrow, current: EscrowStatus) -> None:
        if current is EscrowStatus.awaiting_payment:
            return  # nothing was paid in
        if current is EscrowStatus.authorized:
            # No money is in the ledger, only the authorization's memo, reversed when
            # Stripe confirms the release; the card's authorization is cancelled at
            # Stripe after the commit (``escrow.capture``), the job queue retrying it.
            escrow.capture_status = CaptureStatus.release_requested
            escrow.capture_requested_at = self.now()
            await self.session.flush()
            await self._enqueue_recovery(escrow)
            return
        available = self._customer(escrow, AccountKind.available)
        held = self._customer(escrow, AccountKind.escrow)
        if current is EscrowStatus.created:
            postings = [(held, -escrow.hold_amount), (available, escrow.hold_amount)]
        elif escrow.keeps_platform_fee_on_cancel:
            # The fee already sits in platform_fees since acceptance and stays there.
            postings = [(held, -escrow.price_amount), (available, escrow.price_amount)]
        else:
            postings = [
                (held, -escrow.price_amount),
                (self._fees(escrow), -escrow.platform_fee_amount),
                (available, escrow.hold_amount),
            ]
        await self._post(escrow, "cancel", "escrow_refund", postings)

    # --- helpers --------------------------------------------------------------------

    async def _post(
        self,
        escrow: Escrow,
        step: str,
        transaction_type: str,
        postings: list[tuple[ledger_service.AccountRef, int]],
        *,
        initiated_by: str | None = None,
        event: StagedEvent | None = None,
        riders: Sequence[Rider] = (),
    ) -> StoredTransaction | None:
        """Post one step of an escrow under the cause key ``escrow:{id}:{step}``, with
        ``event`` (written by the ledger with the postings).

        Zero parts (a fee rate of 0, a fee that rounds to 0) are left out; a step with
        nothing left to move posts nothing and writes no event: None, and the caller
        emits the event itself.
        """
        nonzero = [ledger_service.PostingSpec(ref, amount) for ref, amount in postings if amount]
        if len(nonzero) < 2:
            return None
        result = await self.ledger.post(
            ledger_service.NewTransaction(
                type=transaction_type,
                cause_type=CauseType.escrow,
                cause_key=_cause(escrow, step),
                description=f"Escrow {public_id(ESCROW_PREFIX, escrow.id)}: {step}",
                metadata={"escrow_id": escrow.id, "reference": escrow.reference},
                postings=nonzero,
                initiated_by=initiated_by,
                event=event,
                riders=riders,
            )
        )
        return result.transaction

    @staticmethod
    def _customer(escrow: Escrow, kind: AccountKind) -> ledger_service.AccountRef:
        return ledger_service.AccountRef.user(escrow.customer_id, kind, escrow.currency)

    @staticmethod
    def _fees(escrow: Escrow) -> ledger_service.AccountRef:
        return ledger_service.AccountRef.platform(AccountKind.platform_fees, escrow.currency)

    @staticmethod
    def _visible(escrow: Escrow, user: User) -> bool:
        return user.id in (escrow.customer_id, escrow.payee_id) or is_admin(user)

    @staticmethod
    def may_see(escrow: Escrow, user: User) -> bool:
        """A party of the escrow or an admin (others get 404)."""
        return EscrowService._visible(escrow, user)

    @staticmethod
    def _may_request(action: EscrowAction, escrow: Escrow, actor: User) -> bool:
        """Who may ask for a transition at all (whatever the status)."""
        is_payee = actor.id == escrow.payee_id
        if action is EscrowAction.accept:
            return is_payee
        if action is EscrowAction.complete:
            # Never the payee, even one who is also an admin: nobody settles their own job.
            return not is_payee and (actor.id == escrow.customer_id or is_admin(actor))
        return True  # cancel: any party or an admin; the status decides below

    def _may_cancel_now(self, escrow: Escrow, actor: User, current: EscrowStatus) -> bool:
        if is_admin(actor):
            return True
        if actor.id == escrow.customer_id:
            return (
                current is not EscrowStatus.accepted
                or self.settings.escrow_customer_may_cancel_after_accept
            )
        # The payee may decline an offer they have not accepted yet (it only returns
        # the customer's money); once accepted, the job is theirs to complete.
        return current in (EscrowStatus.created, EscrowStatus.authorized)
