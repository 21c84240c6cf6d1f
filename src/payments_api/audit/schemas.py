from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditLogEntryRead(BaseModel):
    id: str = Field(examples=["aud_3"])
    actor_id: str
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None
    request_id: str | None
    created_at: datetime


class AuditLogList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[AuditLogEntryRead]
    has_more: bool
