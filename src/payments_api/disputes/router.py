from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from payments_api import routes
from payments_api.deps import AdminUser, SessionDep
from payments_api.disputes import errors as disputes_errors
from payments_api.disputes.models import DISPUTE_STATUSES
from payments_api.disputes.schemas import DisputeList, DisputeRead
from payments_api.disputes.service import DisputeQueries
from payments_api.kit.pagination import InvalidCursor
from payments_api.problems import problem_responses

router = APIRouter(tags=["admin"])


class DisputeFilters(routes.Page):
    status: str | None
    user_id: str | None


DisputePage = Annotated[
    DisputeFilters,
    routes.cursor_page(
        "Dispute id to continue after.",
        status=Annotated[
            str | None, Query(max_length=32, description="Only disputes in this status.")
        ],
        user_id=Annotated[
            str | None, Query(max_length=255, description="Only this customer's disputes.")
        ],
    ),
]


@router.get(
    "/api/v1/admin/disputes",
    summary="Card disputes, newest first",
    description=f"Statuses: {', '.join(DISPUTE_STATUSES)}.",
    responses=problem_responses(401, 403, 422, InvalidCursor),
)
async def list_disputes(_admin: AdminUser, session: SessionDep, page: DisputePage) -> DisputeList:
    return await DisputeQueries(session).list(**page)


@router.get(
    "/api/v1/admin/disputes/{dispute_id}",
    summary="One card dispute",
    responses=problem_responses(401, 403, disputes_errors.DisputeNotFound),
)
async def get_dispute(
    dispute_id: Annotated[str, Path(max_length=32, examples=["dsp_4"])],
    _admin: AdminUser,
    session: SessionDep,
) -> DisputeRead:
    return await DisputeQueries(session).get(dispute_id)
