from __future__ import annotations

from fastapi import APIRouter

from payments_api.deps import CurrentUser
from payments_api.problems import problem_responses
from payments_api.users.schemas import UserRead

router = APIRouter(prefix="/api/v1/me", tags=["me"])


@router.get(
    "",
    summary="The calling user",
    responses=problem_responses(401),
)
async def get_me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)
