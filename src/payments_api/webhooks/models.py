from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base

EVENT_STATUSES = ("received", "processed", "failed", "ignored")


class WebhookEvent(Base):
    """The inbox: every verified Stripe event, stored before it is applied."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        CheckConstraint("endpoint IN ('platform', 'connect')", name="endpoint"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in EVENT_STATUSES) + ")", name="status"
        ),
        Index(
            "ix_webhook_events_status_next_attempt_at",
            "status",
            "next_attempt_at",
            postgresql_where=text("status = 'failed'"),
        ),
        Index("ix_webhook_events_received_at", "received_at"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    """Stripe's event id (``evt_...``): the unique key that makes delivery exactly-once."""
    endpoint: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(128))
    account: Mapped[str | None] = mapped_column(String(255))
    created: Mapped[datetime]
    """When Stripe created the event."""
    livemode: Mapped[bool] = mapped_column(Boolean)
    api_version: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'received'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    processed_at: Mapped[datetime | None]
