"""The base of the escrow service: its collaborators, and the ledger postings and
events every escrow step (funding, transitions) writes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.db import Rider
from payments_api.earnings import service as earnings_service
from payments_api.escrow.models import Escrow
from payments_api.escrow.repository import EscrowRepository
from payments_api.escrow.views import ESCROW_PREFIX, escrow_read, visible
from payments_api.events.outbox import StagedEvent, emit_staged, stage
from payments_api.events.types import EventType
from payments_api.kit.clock import utcnow
from payments_api.kit.pagination import public_id
from payments_api.ledger import service as ledger_service
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import StoredTransaction
from payments_api.settings import Settings
from payments_api.users.models import User
from payments_api.users.repository import UserRepository

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class TransitionResult:
    escrow: Escrow
    changed: bool
    """False when the escrow was already in the requested state (a no-op)."""
    emitted: bool = False
    """The transition's event was written already (with its ledger posting)."""


def _cause(escrow: Escrow, step: str) -> str:
    return f"escrow:{escrow.id}:{step}"


def _no_answer(_: Escrow) -> Sequence[Rider]:
    return ()


class EscrowPosting:
    """What every escrow step shares: the session, the repositories, the ledger, and an
    escrow's postings (cause key ``escrow:{id}:{step}``) and events."""

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
        self.answer: Callable[[Escrow], Sequence[Rider]] = _no_answer
        """Riders storing the request's answer for the escrow as it ends (set by a
        one-transaction route: ``kit.idempotency.response_riders``), sent with the
        posting of a creation or of an accept or complete done in one statement."""

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

    async def _apply_accept(
        self, escrow: Escrow, event: StagedEvent | None = None, riders: Sequence[Rider] = ()
    ) -> bool:
        """Post the platform fee (with ``event`` and ``riders``, if any); whether
        ``event`` was written (not when there was nothing to post)."""
        transaction = await self._post(
            escrow,
            "accept",
            "escrow_platform_fee",
            [
                (self._customer(escrow, AccountKind.escrow), -escrow.platform_fee_amount),
                (self._fees(escrow), escrow.platform_fee_amount),
            ],
            event=event,
            riders=riders,
        )
        return event is not None and transaction is not None

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
    def may_see(escrow: Escrow, user: User) -> bool:
        """A party of the escrow or an admin (others get 404)."""
        return visible(escrow, user)
