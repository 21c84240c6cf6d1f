from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request, Response

from payments_api import routes
from payments_api.deps import (
    BEARER_SECURITY,
    CurrentUser,
    SessionDep,
    get_current_user,
    holding_role,
    principal_of,
    request_session,
    state_of,
)
from payments_api.escrow import errors as escrow_errors
from payments_api.escrow.capture import EscrowCaptures
from payments_api.escrow.models import Escrow, EscrowStatus
from payments_api.escrow.schemas import EscrowAccept, EscrowCreate, EscrowList, EscrowRead
from payments_api.escrow.service import EscrowService
from payments_api.escrow.views import escrow_read, parse_escrow_id
from payments_api.kit.idempotency import (
    IdempotencyKeyDep,
    after_commit,
    one_transaction,
    response_riders,
)
from payments_api.ledger import errors as ledger_errors
from payments_api.problems import problem_responses
from payments_api.projects import errors as projects_errors
from payments_api.users.models import User

router = APIRouter(tags=["escrow"])


async def get_escrow_service(request: Request, session: SessionDep) -> EscrowService:
    # async although it awaits nothing: FastAPI runs a plain ``def`` dependency in a
    # worker thread, a hop that showed in the settlement profile (bench/RESULTS.md). The
    # settings are read off the request, not through SettingsDep: each dependency FastAPI
    # solves is a share of a settlement's CPU (bench/README.md).
    state = state_of(request)
    return EscrowService(session, state.settings)


EscrowServiceDep = Annotated[EscrowService, Depends(get_escrow_service)]


def captures_of(request: Request) -> EscrowCaptures:
    state = state_of(request)
    return EscrowCaptures(state.sessionmaker, state.stripe, state.settings)


async def get_escrow_captures(request: Request) -> EscrowCaptures:
    return captures_of(request)


EscrowCapturesDep = Annotated[EscrowCaptures, Depends(get_escrow_captures)]


@dataclass(frozen=True, slots=True)
class EscrowCall:
    """What a settlement step works with: the caller's user row and the escrow service
    on the request's transaction."""

    user: User
    service: EscrowService


def escrow_call(*roles: str) -> Callable[[Request], AsyncIterator[EscrowCall]]:
    """The dependency of a settlement step (create, accept, complete): what the token,
    ``SessionDep``, ``CurrentUser``, ``require_role`` and ``EscrowServiceDep`` resolve,
    in one. FastAPI reads every dependency's parameters and cache key: 14.43 M
    instructions per settlement with the five, 13.59 M with this one (bench/cpu.py
    --instructions). A generator, as ``SessionDep`` is: without the idempotency
    middleware's transaction (no key, or a route taken off ``@one_transaction``) it
    opens and commits the request's own. The routes declare the bearer scheme
    themselves (``BEARER_SECURITY``)."""

    async def resolve(request: Request) -> AsyncIterator[EscrowCall]:
        principal = principal_of(request)  # 401 before a session is opened
        async with request_session(request) as session:
            user = await get_current_user(principal, session)
            if roles:
                holding_role(user, *roles)
            yield EscrowCall(user, await get_escrow_service(request, session))

    return resolve


EscrowCallDep = Annotated[EscrowCall, Depends(escrow_call(), scope="function")]
CustomerEscrowCallDep = Annotated[EscrowCall, Depends(escrow_call("customer"), scope="function")]


def ask_stripe_after_commit(
    escrow: Escrow, captures: EscrowCaptures, request: Request, background: BackgroundTasks
) -> None:
    """A capture or release recorded by this request is asked of Stripe once the
    request's transaction has committed: after the idempotency middleware's commit for a
    one-transaction route, else as a background task (the route's own session commits
    before the response). The ``escrow.capture`` job asks again if this never answers."""
    if escrow.capture_status not in ("capture_requested", "release_requested"):
        return
    escrow_id = escrow.id

    async def submit() -> None:
        await captures.submit(escrow_id)

    if not after_commit(request.scope, submit):
        background.add_task(submit)


EscrowIdPath = Annotated[
    str, Path(max_length=64, description="The escrow id.", examples=["esc_12"])
]


class EscrowFilters(routes.Page):
    role: str | None
    status: EscrowStatus | None


EscrowPage = Annotated[
    EscrowFilters,
    routes.cursor_page(
        "Escrow id to continue after (exclusive).",
        role=Annotated[
            str | None,
            Query(
                pattern="^(customer|payee)$",
                description="Only escrows where the caller is the customer, or the payee.",
            ),
        ],
        status=Annotated[EscrowStatus | None, Query(description="Only this status.")],
    ),
]


def _answering(call: EscrowCall, status: int) -> tuple[User, EscrowService]:
    """The caller and the service of a settlement step, the service set to store this
    route's answer (the escrow as the caller sees it) with the request's
    Idempotency-Key by the escrow's posting statement (one round trip less)."""
    service, viewer = call.service, call.user
    service.answer = lambda escrow: response_riders(
        service.session, status, escrow_read(escrow, viewer)
    )
    return viewer, service


@router.post(
    "/api/v1/escrows",
    summary="Offer a job to a payee and hold its price plus the platform fee",
    description=(
        "Moves `amount` plus the platform fee (rates captured now) from the caller's "
        "available balance in `currency` into escrow. Requires the customer role. "
        "402 `insufficient_funds` when the available balance in that currency does not "
        "cover it; 404 `payee_not_found` for an unknown user or one without the payee "
        "role; 422 `escrow_self_offer` for yourself; 409 `wallet_frozen` while an admin "
        "has frozen the customer's wallet. Prices have a minimum per currency (a minimum "
        "amount, not a minimum fee: see `amount`), so every escrow pays its fees; below it "
        "422 `escrow_amount_too_small` with `minimum`."
    ),
    status_code=201,
    responses=problem_responses(
        400,
        401,
        403,
        escrow_errors.EscrowAmountTooLarge,
        escrow_errors.EscrowAmountTooSmall,
        escrow_errors.SelfOffer,
        ledger_errors.InsufficientFunds,
        ledger_errors.WalletFrozen,
        projects_errors.PayeeNotFound,
        projects_errors.ProjectNotFound,
        projects_errors.SessionNotFound,
    ),
    openapi_extra=BEARER_SECURITY,
)
@one_transaction
async def create_escrow(
    body: EscrowCreate,
    call: CustomerEscrowCallDep,
    idempotency_key: IdempotencyKeyDep,
    response: Response,
) -> EscrowRead:
    customer, service = _answering(call, 201)
    escrow, replayed = await service.create(customer, body, idempotency_key=idempotency_key)
    routes.mark_replayed(response, replayed)
    return escrow_read(escrow, customer)


@router.get(
    "/api/v1/escrows",
    summary="Escrows the caller is a party of, newest first",
    responses=problem_responses(401, 422),
)
async def list_escrows(
    user: CurrentUser, service: EscrowServiceDep, page: EscrowPage
) -> EscrowList:
    return await service.page(user, **page)


@router.get(
    "/api/v1/escrows/{escrow_id}",
    summary="One escrow (its customer, its payee, or an admin)",
    responses=problem_responses(401, escrow_errors.EscrowNotFound),
)
async def get_escrow(
    escrow_id: EscrowIdPath, user: CurrentUser, service: EscrowServiceDep
) -> EscrowRead:
    return escrow_read(await service.get(parse_escrow_id(escrow_id), user), user)


TRANSITION_PROBLEMS = (
    400,
    401,
    403,
    404,
    409,
    422,
    escrow_errors.EscrowActionForbidden,
    escrow_errors.EscrowInvalidTransition,
    escrow_errors.EscrowNotFound,
    ledger_errors.WalletFrozen,
)
"""What any move of an escrow from one status to another can answer."""


@router.post(
    "/api/v1/escrows/{escrow_id}/accept",
    summary="The payee accepts the job (the platform fee is taken)",
    description=(
        "Only the escrow's payee. Accepting an accepted escrow returns it unchanged; any "
        "other status is 409 `escrow_invalid_transition` with `current_status`. An escrow "
        "paid by authorization (`status: authorized`) is captured first: the answer shows "
        "`capture_status: capture_requested`, and the escrow becomes `accepted` (events "
        "`escrow.funded`, `escrow.accepted`) when Stripe confirms the capture, usually "
        "before the next read. `amount_to_capture` captures part of the authorization; the "
        "price and fees become those of what was captured."
    ),
    responses=problem_responses(
        *TRANSITION_PROBLEMS, escrow_errors.CaptureUnavailable, escrow_errors.CaptureAmountInvalid
    ),
    openapi_extra=BEARER_SECURITY,
)
@one_transaction
async def accept_escrow(
    escrow_id: EscrowIdPath,
    request: Request,
    call: EscrowCallDep,
    background: BackgroundTasks,
    idempotency_key: IdempotencyKeyDep,
    body: EscrowAccept | None = None,
) -> EscrowRead:
    user, service = _answering(call, 200)
    result = await service.accept(
        parse_escrow_id(escrow_id),
        user,
        amount_to_capture=body.amount_to_capture if body is not None else None,
    )
    ask_stripe_after_commit(result.escrow, captures_of(request), request, background)
    return escrow_read(result.escrow, user)


@router.post(
    "/api/v1/escrows/{escrow_id}/complete",
    summary="Complete the job and pay the payee (customer or admin)",
    description=(
        "The service fee goes to the platform and the payee's take to the payee's "
        "available balance. Never by the payee. Completing a completed escrow returns it "
        "unchanged (no money moves); from any status but accepted it is 409 "
        "`escrow_invalid_transition`."
    ),
    responses=problem_responses(*TRANSITION_PROBLEMS),
    openapi_extra=BEARER_SECURITY,
)
@one_transaction
async def complete_escrow(
    escrow_id: EscrowIdPath,
    call: EscrowCallDep,
    idempotency_key: IdempotencyKeyDep,
) -> EscrowRead:
    user, service = _answering(call, 200)
    result = await service.complete(parse_escrow_id(escrow_id), user)
    return escrow_read(result.escrow, user)
