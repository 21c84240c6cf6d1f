"""Projects, sessions and project wallets of the caller (payee role), SPEC 6.3."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from payments_api import routes
from payments_api.deps import PrincipalDep, SessionDep, StateDep, require_role
from payments_api.kit import pagination
from payments_api.kit.idempotency import one_transaction
from payments_api.problems import problem_responses
from payments_api.projects import errors as projects_errors
from payments_api.projects.direct import PAYEE_ROLE
from payments_api.projects.schemas import (
    ProjectCreate,
    ProjectList,
    ProjectRead,
    ProjectUpdate,
    ProjectWalletRead,
    SessionAggregateList,
    SessionCreate,
    SessionList,
    SessionRead,
)
from payments_api.projects.service import ProjectService, ProjectWalletService
from payments_api.users.models import User

router = APIRouter(tags=["projects"])

PayeeUser = Annotated[User, Depends(require_role(PAYEE_ROLE))]
ProjectIdPath = Annotated[
    str,
    Path(
        alias="projectId",
        max_length=32,
        description="The project's id.",
        examples=["prj_12"],
    ),
]
SessionIdPath = Annotated[
    str,
    Path(
        alias="sessionId",
        max_length=32,
        description="The session's id.",
        examples=["ses_40"],
    ),
]
CURSOR_DESCRIPTION = "Id of the last item seen; the page after it."
ProjectPage = Annotated[routes.Page, routes.cursor_page(CURSOR_DESCRIPTION, max_length=32)]


class SessionFilters(routes.Page):
    status: Literal["open", "closed"] | None


# A page of a project's sessions, in either view of them (with or without sums).
SessionPage = Annotated[
    SessionFilters,
    routes.cursor_page(
        CURSOR_DESCRIPTION,
        max_length=32,
        status=Annotated[
            Literal["open", "closed"] | None, Query(description="Only sessions in this state.")
        ],
    ),
]


async def get_project_service(session: SessionDep) -> ProjectService:
    return ProjectService(session)


async def get_wallet_service(state: StateDep) -> ProjectWalletService:
    # No request-wide transaction: the wallet reads the database, closes its
    # transaction, then asks Stripe for the balance.
    return ProjectWalletService(state.sessionmaker, state.stripe)


ProjectServiceDep = Annotated[ProjectService, Depends(get_project_service)]
# What every route on one of the caller's projects answers: not signed in, not a payee,
# no such project of theirs.
PROJECT_PROBLEMS = (401, 403, projects_errors.ProjectNotFound)
# The project wallet's routes check ownership themselves (any signed-in caller may ask):
# another user's project is 403, a missing one 404.
OWNER_ONLY_PROBLEMS = (projects_errors.ProjectForbidden, projects_errors.ProjectNotFound)
WalletServiceDep = Annotated[ProjectWalletService, Depends(get_wallet_service)]


@router.post(
    "/api/v1/me/projects",
    summary="Create a project (an earning context: a shop, a show)",
    status_code=201,
    responses=problem_responses(401, 403, 422),
)
@one_transaction
async def create_project(
    body: ProjectCreate, user: PayeeUser, service: ProjectServiceDep
) -> ProjectRead:
    return await service.create(user, body)


@router.get(
    "/api/v1/me/projects",
    summary="The caller's projects, newest first",
    responses=problem_responses(401, 403, pagination.InvalidCursor),
)
async def list_projects(
    user: PayeeUser, service: ProjectServiceDep, page: ProjectPage
) -> ProjectList:
    return await service.list(user, **page)


@router.get(
    "/api/v1/me/projects/{projectId}",
    summary="One of the caller's projects",
    description="Another user's project is answered like a missing one (404).",
    responses=problem_responses(*PROJECT_PROBLEMS),
)
async def get_project(
    project_id: ProjectIdPath, user: PayeeUser, service: ProjectServiceDep
) -> ProjectRead:
    return await service.get(user, project_id)


@router.patch(
    "/api/v1/me/projects/{projectId}",
    summary="Rename, describe, archive or re-activate a project",
    responses=problem_responses(*PROJECT_PROBLEMS, 422),
)
@one_transaction
async def update_project(
    project_id: ProjectIdPath, body: ProjectUpdate, user: PayeeUser, service: ProjectServiceDep
) -> ProjectRead:
    return await service.update(user, project_id, body)


@router.post(
    "/api/v1/me/projects/{projectId}/sessions",
    summary="Open a session (an earning window) of the project",
    description="At most one session is open per project: 409 `session_already_open` "
    "otherwise; 409 `project_archived` for an archived project.",
    status_code=201,
    responses=problem_responses(
        *PROJECT_PROBLEMS, 422, projects_errors.ProjectArchived, projects_errors.SessionAlreadyOpen
    ),
)
@one_transaction
async def open_project_session(
    project_id: ProjectIdPath,
    user: PayeeUser,
    service: ProjectServiceDep,
    body: SessionCreate | None = None,
) -> SessionRead:
    return await service.open_session(user, project_id, body or SessionCreate())


@router.get(
    "/api/v1/me/projects/{projectId}/sessions",
    summary="The project's sessions, newest first",
    description="Without sums; `GET .../wallet/sessions` adds what each session earned.",
    responses=problem_responses(*PROJECT_PROBLEMS, 422),
)
async def list_project_sessions(
    project_id: ProjectIdPath, user: PayeeUser, service: ProjectServiceDep, page: SessionPage
) -> SessionList:
    return await service.list_sessions(user, project_id, **page)


@router.get(
    "/api/v1/me/projects/{projectId}/sessions/{sessionId}",
    summary="One session of the project",
    responses=problem_responses(*PROJECT_PROBLEMS, projects_errors.SessionNotFound),
)
async def get_project_session(
    project_id: ProjectIdPath,
    session_id: SessionIdPath,
    user: PayeeUser,
    service: ProjectServiceDep,
) -> SessionRead:
    return await service.get_session(user, project_id, session_id)


@router.post(
    "/api/v1/me/projects/{projectId}/sessions/{sessionId}/close",
    summary="Close a session",
    description="Payments can no longer be started for it (those already started still "
    "count for it). Closing a closed session returns it unchanged.",
    responses=problem_responses(*PROJECT_PROBLEMS, projects_errors.SessionNotFound),
)
@one_transaction
async def close_project_session(
    project_id: ProjectIdPath,
    session_id: SessionIdPath,
    user: PayeeUser,
    service: ProjectServiceDep,
) -> SessionRead:
    return await service.close_session(user, project_id, session_id)


@router.get(
    "/api/v1/me/projects/{projectId}/wallet",
    summary="The project wallet: connected-account balance, project earnings, payout account",
    description="Owner only: 403 `project_forbidden` for another user's project, 403 "
    "`forbidden` without the payee role. `balance` is the connected account's Stripe "
    "balance (`scope: account_level`, shared by all the payee's projects; empty without a "
    "connected account); `earnings` sums this project's confirmed direct payments (the "
    "payee's take, net of the platform's fee).",
    responses=problem_responses(401, *OWNER_ONLY_PROBLEMS, *routes.PROVIDER_PROBLEMS),
)
async def get_project_wallet(
    project_id: ProjectIdPath, principal: PrincipalDep, service: WalletServiceDep
) -> ProjectWalletRead:
    return await service.wallet(principal, project_id)


@router.get(
    "/api/v1/me/projects/{projectId}/wallet/sessions",
    summary="The project's sessions with what each earned, newest first",
    description="Owner only (403 otherwise). Per session: `paid_request_count`, "
    "`total_tip_amount_cents` and the other sums of the payee's take, its timestamps "
    "and status.",
    responses=problem_responses(401, pagination.InvalidCursor, *OWNER_ONLY_PROBLEMS),
)
async def list_project_wallet_sessions(
    project_id: ProjectIdPath,
    principal: PrincipalDep,
    service: WalletServiceDep,
    page: SessionPage,
) -> SessionAggregateList:
    return await service.sessions(principal, project_id, **page)
