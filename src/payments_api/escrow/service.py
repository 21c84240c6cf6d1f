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

from payments_api.escrow.card_funding import CAPTURE_JOB as CAPTURE_JOB
from payments_api.escrow.card_funding import FundingOutcome as FundingOutcome
from payments_api.escrow.errors import (
    CaptureUnavailable,
    EscrowAmountTooLarge,
    EscrowAmountTooSmall,
    EscrowNotFound,
    PayeeNotFound,
    SelfOffer,
)
from payments_api.escrow.fees import smallest_price_with_fees, split
from payments_api.escrow.models import CaptureMethod, Escrow, EscrowFunding, EscrowStatus
from payments_api.escrow.schemas import EscrowCreate, EscrowList
from payments_api.escrow.transitions import EscrowTransitions
from payments_api.escrow.views import ESCROW_PREFIX, escrow_read, visible
from payments_api.events.types import EventType
from payments_api.kit.amounts import AmountNotInSteps
from payments_api.kit.idempotency import IdempotencyKeyReused, fingerprint
from payments_api.kit.pagination import parse_cursor, public_id
from payments_api.ledger.kinds import AccountKind
from payments_api.money import MAX_MINOR_AMOUNT, charge_step, major_to_minor
from payments_api.projects.payee_projects import payee_project, project_session
from payments_api.projects.repository import ProjectRepository
from payments_api.settings import Settings
from payments_api.users.models import User


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


class EscrowService(EscrowTransitions):
    """The escrow service: creation and reads here; card funding (``card_funding``)
    and the parties' transitions (``transitions``) by inheritance, on the shared
    collaborators of ``posting.EscrowPosting``."""

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
                riders=self.answer(escrow),
            )
            if held is None:  # pragma: no cover - a hold is never zero
                await self._emit(escrow, EventType.escrow_funded)
        return escrow, False

    async def _check_project(self, body: EscrowCreate) -> None:
        """A job may name the payee's own project (and one of its sessions) only: the
        earnings of another payee's project are not the customer's to add to. Someone
        else's project is answered like a missing one."""
        repository = ProjectRepository(self.session)
        project = await payee_project(repository, body.payee_id, body.project_id)
        if body.session_id is not None:
            await project_session(repository, project, body.session_id)

    async def _check_payee(self, payee_id: str) -> None:
        payee = await self.users.get(payee_id)
        if payee is None or "payee" not in (payee.roles or []):
            # Unknown users and users without the payee role get the same answer.
            raise PayeeNotFound(f"No payee {payee_id!r}.", payee_id=payee_id)

    async def get(self, escrow_id: int, viewer: User) -> Escrow:
        escrow = await self.repository.get(escrow_id)
        if escrow is None or not visible(escrow, viewer):
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
