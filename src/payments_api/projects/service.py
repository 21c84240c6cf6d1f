"""Projects and sessions for their payee, and the project wallet (SPEC 6.3).

The payee's CRUD routes answer another user's project like a missing one (404); the
wallet routes answer it with 403, as the contract says. The wallet reads the database
in a short read-only transaction, closes it, and only then asks Stripe for the
connected account's balance.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.auth import Principal
from payments_api.kit.clock import utcnow
from payments_api.kit.lookups import by_public_id
from payments_api.kit.pagination import parse_cursor, public_id
from payments_api.kit.reads import read_of
from payments_api.money import MoneyRead
from payments_api.payout_accounts.repository import PayoutAccountRepository
from payments_api.payout_accounts.service import to_read
from payments_api.problems import Forbidden
from payments_api.projects.direct import PAYEE_ROLE, PROJECT_PREFIX, SESSION_PREFIX
from payments_api.projects.errors import (
    ProjectArchived,
    ProjectForbidden,
    ProjectNotFound,
    SessionAlreadyOpen,
    SessionNotFound,
)
from payments_api.projects.models import Project, ProjectSession
from payments_api.projects.repository import Aggregate, DirectPaymentRepository, ProjectRepository
from payments_api.projects.schemas import (
    ConnectedBalance,
    ProjectCreate,
    ProjectEarnings,
    ProjectList,
    ProjectRead,
    ProjectUpdate,
    ProjectWalletRead,
    SessionAggregateList,
    SessionAggregateRead,
    SessionCreate,
    SessionList,
    SessionRead,
)
from payments_api.stripe.gateway import StripeGateway
from payments_api.stripe.objects import BalanceAmount
from payments_api.users.models import User

OPEN_SESSION_CONSTRAINT = "project_sessions_project_id_open_key"


def project_read(project: Project, open_session_id: int | None) -> ProjectRead:
    return read_of(
        ProjectRead,
        project,
        id=public_id(PROJECT_PREFIX, project.id),
        open_session_id=public_id(SESSION_PREFIX, open_session_id) if open_session_id else None,
    )


def _session_ids(row: ProjectSession) -> dict[str, str]:
    return {
        "id": public_id(SESSION_PREFIX, row.id),
        "project_id": public_id(PROJECT_PREFIX, row.project_id),
    }


def session_read(row: ProjectSession) -> SessionRead:
    return read_of(SessionRead, row, **_session_ids(row))


def _aggregate_fields(aggregate: Aggregate, currency: str) -> dict[str, Any]:
    return {
        "currency": currency,
        "payment_count": aggregate.payment_count,
        "paid_request_count": aggregate.paid_request_count,
        "tip_count": aggregate.tip_count,
        "total_tip_amount_cents": aggregate.total_tip_amount,
        "total_request_amount_cents": aggregate.total_request_amount,
        "total_earned_amount_cents": aggregate.total_earned_amount,
        "last_paid_at": aggregate.last_paid_at,
    }


def _amounts(entries: list[BalanceAmount]) -> list[MoneyRead]:
    """Stripe's ``[{amount, currency, source_types}]`` as our money, per currency."""
    amounts = [MoneyRead(amount=e.amount, currency=e.currency) for e in entries]
    return sorted(amounts, key=lambda m: m.currency)


class ProjectService:
    """The payee's own projects and sessions, in the request's transaction."""

    def __init__(self, session: AsyncSession, *, now: Callable[[], datetime] = utcnow) -> None:
        self.session = session
        self.repository = ProjectRepository(session)
        self.now = now

    async def _owned(self, user: User, project_id: str, *, for_update: bool = False) -> Project:
        project = await by_public_id(
            PROJECT_PREFIX,
            project_id,
            lambda number: self.repository.get(number, for_update=for_update),
            ProjectNotFound,
        )
        if project.owner_id != user.id:
            raise ProjectNotFound()
        return project

    async def _read(self, project: Project) -> ProjectRead:
        open_sessions = await self.repository.open_sessions([project.id])
        return project_read(project, open_sessions.get(project.id))

    async def create(self, user: User, body: ProjectCreate) -> ProjectRead:
        """Create a project owned by the caller."""
        project = await self.repository.add(
            Project(
                owner_id=user.id,
                name=body.name,
                description=body.description,
                currency=body.currency,
                status="active",
            )
        )
        return project_read(project, None)

    async def list(self, user: User, *, limit: int, starting_after: str | None) -> ProjectList:
        rows = await self.repository.page(
            user.id, limit=limit + 1, before_id=parse_cursor(PROJECT_PREFIX, starting_after)
        )
        page = rows[:limit]
        open_sessions = await self.repository.open_sessions([p.id for p in page])
        return ProjectList(
            data=[project_read(p, open_sessions.get(p.id)) for p in page],
            has_more=len(rows) > limit,
        )

    async def get(self, user: User, project_id: str) -> ProjectRead:
        return await self._read(await self._owned(user, project_id))

    async def update(self, user: User, project_id: str, body: ProjectUpdate) -> ProjectRead:
        """Change the fields the body sets (``description: null`` clears it)."""
        project = await self._owned(user, project_id, for_update=True)
        changes = body.model_dump(exclude_unset=True)
        for name in ("name", "status"):
            if changes.get(name) is not None:
                setattr(project, name, changes[name])
        if "description" in changes:
            project.description = changes["description"]
        project.updated_at = self.now()
        await self.session.flush()
        return await self._read(project)

    # --- sessions ------------------------------------------------------------------------

    async def _session(
        self, user: User, project_id: str, session_id: str, *, for_update: bool = False
    ) -> ProjectSession:
        project = await self._owned(user, project_id)
        return await by_public_id(
            SESSION_PREFIX,
            session_id,
            lambda number: self.repository.get_session(project.id, number, for_update=for_update),
            SessionNotFound,
        )

    async def open_session(self, user: User, project_id: str, body: SessionCreate) -> SessionRead:
        """Open an earning window now; one at a time per project (the database's partial
        unique index settles concurrent calls)."""
        project = await self._owned(user, project_id, for_update=True)
        if project.status != "active":
            raise ProjectArchived("An archived project cannot open sessions.")
        open_sessions = await self.repository.open_sessions([project.id])
        if project.id in open_sessions:
            raise SessionAlreadyOpen(
                "Close the open session first.",
                open_session_id=public_id(SESSION_PREFIX, open_sessions[project.id]),
            )
        try:
            async with self.session.begin_nested():
                row = await self.repository.add_session(
                    ProjectSession(
                        project_id=project.id,
                        title=body.title,
                        status="open",
                        opened_at=self.now(),
                    )
                )
        except IntegrityError as exc:
            if OPEN_SESSION_CONSTRAINT in str(exc.orig):
                raise SessionAlreadyOpen("Close the open session first.") from exc
            raise
        return session_read(row)

    async def close_session(self, user: User, project_id: str, session_id: str) -> SessionRead:
        """Close an earning window. Closing a closed one changes nothing (safe to retry)."""
        row = await self._session(user, project_id, session_id, for_update=True)
        if row.status == "open":
            row.status = "closed"
            row.closed_at = self.now()
            await self.session.flush()
        return session_read(row)

    async def get_session(self, user: User, project_id: str, session_id: str) -> SessionRead:
        return session_read(await self._session(user, project_id, session_id))

    async def list_sessions(
        self,
        user: User,
        project_id: str,
        *,
        limit: int,
        starting_after: str | None,
        status: str | None,
    ) -> SessionList:
        project = await self._owned(user, project_id)
        rows = await self.repository.session_page(
            project.id,
            limit=limit + 1,
            before_id=parse_cursor(SESSION_PREFIX, starting_after),
            status=status,
        )
        return SessionList(data=[session_read(r) for r in rows[:limit]], has_more=len(rows) > limit)


class ProjectWalletService:
    """The project wallet: owner only, 403 for anyone else (SPEC 6.3)."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], stripe: StripeGateway
    ) -> None:
        self.sessionmaker = sessionmaker
        self.stripe = stripe

    @staticmethod
    async def _authorize(session: AsyncSession, principal: Principal, project_id: str) -> Project:
        if not principal.has_role(PAYEE_ROLE):
            raise Forbidden("Project wallets need the payee role.")
        project = await by_public_id(
            PROJECT_PREFIX, project_id, ProjectRepository(session).get, ProjectNotFound
        )
        if project.owner_id != principal.sub:
            raise ProjectForbidden("This project is not yours.")
        return project

    async def wallet(self, principal: Principal, project_id: str) -> ProjectWalletRead:
        """The connected account's balance (Stripe), the project's earnings and the payout
        account as stored. No database transaction is open during the Stripe call."""
        async with self.sessionmaker() as session:
            project = await self._authorize(session, principal, project_id)
            account = await PayoutAccountRepository(session).get_by_user(principal.sub)
            aggregate = await DirectPaymentRepository(session).project_aggregate(project.id)
            session_count = await ProjectRepository(session).session_count(project.id)
        balance = ConnectedBalance(available=[], pending=[])
        if account is not None and account.stripe_account_id is not None:
            raw = await self.stripe.retrieve_balance(stripe_account=account.stripe_account_id)
            balance = ConnectedBalance(
                available=_amounts(raw.available), pending=_amounts(raw.pending)
            )
        return ProjectWalletRead(
            project_id=public_id(PROJECT_PREFIX, project.id),
            balance=balance,
            earnings=ProjectEarnings(
                **_aggregate_fields(aggregate, project.currency), session_count=session_count
            ),
            payout_account=to_read(account),
        )

    async def sessions(
        self,
        principal: Principal,
        project_id: str,
        *,
        limit: int,
        starting_after: str | None,
        status: str | None,
    ) -> SessionAggregateList:
        """A page of the project's sessions, newest first, each with its sums."""
        async with self.sessionmaker() as session:
            project = await self._authorize(session, principal, project_id)
            rows = await ProjectRepository(session).session_page(
                project.id,
                limit=limit + 1,
                before_id=parse_cursor(SESSION_PREFIX, starting_after),
                status=status,
            )
            page = rows[:limit]
            sums = await DirectPaymentRepository(session).session_aggregates([r.id for r in page])
        return SessionAggregateList(
            data=[
                read_of(
                    SessionAggregateRead,
                    row,
                    **_session_ids(row),
                    **_aggregate_fields(sums.get(row.id, Aggregate()), project.currency),
                )
                for row in page
            ],
            has_more=len(rows) > limit,
        )
