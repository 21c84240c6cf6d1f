"""Escrow transitions asked for by its parties: accept, complete, cancel (the state
machine is in ``service.py``'s docstring; docs/escrow.md has the money table)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from payments_api.db import Rider
from payments_api.earnings import service as earnings_service
from payments_api.earnings.models import EarningSource
from payments_api.escrow.card_funding import CardFunding
from payments_api.escrow.errors import (
    CaptureUnavailable,
    EscrowActionForbidden,
    EscrowInvalidTransition,
    EscrowNotFound,
)
from payments_api.escrow.models import CaptureStatus, Escrow, EscrowStatus
from payments_api.escrow.posting import TransitionResult
from payments_api.escrow.views import ESCROW_PREFIX, is_admin, visible
from payments_api.events.outbox import StagedEvent
from payments_api.events.types import EventType
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind
from payments_api.users.models import User


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


_EVENT = {
    EscrowAction.accept: EventType.escrow_accepted,
    EscrowAction.complete: EventType.escrow_completed,
    EscrowAction.cancel: EventType.escrow_cancelled,
}


class EscrowTransitions(CardFunding):
    """accept, complete and cancel: who may ask, from which status, and what moves."""

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
        if escrow is None or not visible(escrow, actor):
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
            emitted = await self._apply_accept(
                escrow, self._staged(escrow, _EVENT[action]), self.answer(escrow)
            )
        else:
            escrow = await self.repository.complete(
                escrow_id, actor_id=actor.id, admin=is_admin(actor), now=now
            )
            if escrow is None:
                return None
            emitted = await self._apply_complete(
                escrow, now, actor, self._staged(escrow, _EVENT[action]), self.answer(escrow)
            )
        return TransitionResult(self.repository.attach(escrow), changed=True, emitted=emitted)

    async def _apply_complete(
        self,
        escrow: Escrow,
        now: datetime,
        actor: User,
        event: StagedEvent | None = None,
        riders: Sequence[Rider] = (),
    ) -> bool:
        """Post the settlement (with ``event`` and ``riders``, if any) and record the
        payee's earning (in the posting's statement); whether ``event`` was written (not
        when there was nothing to post)."""
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
            riders=[self.earnings.record_with_posting(earning), *riders],
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
