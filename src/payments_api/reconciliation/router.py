from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from payments_api import routes
from payments_api.deps import AdminUser, SessionDep
from payments_api.problems import problem_responses
from payments_api.reconciliation import errors as reconciliation_errors
from payments_api.reconciliation.deps import ReconciliationServiceDep
from payments_api.reconciliation.schemas import (
    ReconciliationRunCreate,
    ReconciliationRunList,
    ReconciliationRunRead,
)
from payments_api.reconciliation.service import ReconciliationQueries

router = APIRouter(tags=["admin"])

RunPage = Annotated[routes.Page, routes.cursor_page("Run id to continue after.")]


@router.post(
    "/api/v1/admin/reconciliation/runs",
    summary="Reconcile a day against Stripe",
    description="Reads Stripe's balance, every balance transaction of the UTC day (plus a "
    "grace period) and the events Stripe reports undelivered, matches them object by "
    "object with the ledger and stores the result. Idempotent per day: a rerun replaces "
    "the day's result (`attempts` counts the runs); 409 `reconciliation_in_progress` "
    "while the same day is being reconciled.",
    status_code=201,
    responses=problem_responses(
        401,
        403,
        409,
        reconciliation_errors.ReconciliationDateInFuture,
        reconciliation_errors.ReconciliationInProgress,
        reconciliation_errors.ReconciliationWindowTooLarge,
        *routes.PROVIDER_PROBLEMS,
    ),
)
async def create_reconciliation_run(
    request_id: routes.RequestIdDep,
    principal: routes.AdminPrincipalDep,
    service: ReconciliationServiceDep,
    body: ReconciliationRunCreate | None = None,
) -> ReconciliationRunRead:
    day = body.date if body is not None and body.date is not None else service.yesterday()
    return await service.run(day, trigger="api", actor_id=principal.sub, request_id=request_id)


@router.get(
    "/api/v1/admin/reconciliation/runs",
    summary="Reconciliation runs, newest day first",
    responses=problem_responses(401, 403, 404, 422),
)
async def list_reconciliation_runs(
    _admin: AdminUser, session: SessionDep, page: RunPage
) -> ReconciliationRunList:
    return await ReconciliationQueries(session).list(**page)


@router.get(
    "/api/v1/admin/reconciliation/runs/{run_id}",
    summary="One reconciliation run with its snapshots and mismatches",
    responses=problem_responses(401, 403, reconciliation_errors.ReconciliationRunNotFound),
)
async def get_reconciliation_run(
    run_id: Annotated[str, Path(max_length=32, examples=["rec_3"])],
    _admin: AdminUser,
    session: SessionDep,
) -> ReconciliationRunRead:
    return await ReconciliationQueries(session).get(run_id)
