from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class WebhookAck(BaseModel):
    received: bool = True
    status: Literal[
        "processed", "duplicate", "in_progress", "ignored", "failed", "malformed", "missing"
    ] = Field(
        description="What happened to the event in this delivery. `malformed`: the "
        "event's object lacks what the service reads; it is stored as failed for an "
        "operator to look at and replay, and not retried."
    )


class WebhookEventRead(BaseModel):
    id: str = Field(examples=["evt_1Q2w3E"])
    endpoint: Literal["platform", "connect"]
    type: str
    account: str | None
    status: Literal["received", "processed", "failed", "ignored"]
    attempts: int
    last_error: str | None
    created: datetime
    received_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None


class WebhookEventList(BaseModel):
    object: str = Field("list", description="Always `list`.")
    data: list[WebhookEventRead]
    has_more: bool
