from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["sandbox"], include_in_schema=False)
