from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from payments_api.audit.schemas import AuditLogList
from payments_api.audit.service import audit_log_page
from payments_api.deps import AdminUser, SessionDep
from payments_api.kit import pagination
from payments_api.kit.pagination import Limit
from payments_api.problems import problem_responses

# Under the admin API's prefix and tag: admins read it, every flow writes it.
router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.get(
    "/audit-log",
    summary="Every admin action, newest first",
    responses=problem_responses(401, 403, pagination.InvalidCursor),
)
async def list_audit_log(
    session: SessionDep,
    _admin: AdminUser,
    limit: Limit = 20,
    starting_after: Annotated[str | None, Query(description="Entry id to continue after.")] = None,
    actor_id: Annotated[str | None, Query(max_length=255, description="Who acted.")] = None,
    action: Annotated[
        str | None, Query(max_length=64, description="e.g. wallet.freeze, refund.create.")
    ] = None,
    target_type: Annotated[
        str | None, Query(max_length=64, description="e.g. user, order, webhook_event.")
    ] = None,
    target_id: Annotated[
        str | None, Query(max_length=255, description="The id of what was acted on.")
    ] = None,
) -> AuditLogList:
    return await audit_log_page(
        session,
        limit=limit,
        starting_after=starting_after,
        filters={
            "actor_id": actor_id,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
        },
    )
