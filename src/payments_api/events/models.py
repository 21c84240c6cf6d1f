"""Tables of the outbox (``events``), the endpoints events go to, and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin


class OutboxEvent(TimestampMixin, Base):
    """One business change, written in the same transaction as the change. Append-only."""

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_user_ids", "user_ids", postgresql_using="gin"),
        sa.Index("ix_events_type_id", "type", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(64))
    change_key: Mapped[str] = mapped_column(sa.String(255), unique=True)
    """What changed, e.g. ``escrow:12:completed``: a second emit for it is a no-op."""
    user_ids: Mapped[list[str]] = mapped_column(
        ARRAY(sa.String(255)), server_default=sa.text("'{}'::varchar[]")
    )
    """The users the event concerns (their feed shows it)."""
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """The resource as the REST API returns it (the admin's view)."""


class WebhookEndpoint(TimestampMixin, Base):
    """A URL of the platform's that receives signed events."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(2048))
    description: Mapped[str | None] = mapped_column(sa.String(500))
    event_types: Mapped[list[str]] = mapped_column(
        ARRAY(sa.String(64)), server_default=sa.text("'{}'::varchar[]")
    )
    """Empty: every type."""
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'enabled'"))
    """enabled, disabled (by an admin or after failing too long)."""
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(500))
    secret: Mapped[str] = mapped_column(sa.String(128))
    previous_secret: Mapped[str | None] = mapped_column(sa.String(128))
    previous_secret_expires_at: Mapped[datetime | None]
    """Until then deliveries are signed with both secrets (rotation overlap)."""
    failing_since: Mapped[datetime | None]
    """First failure with no success since; cleared by a success."""
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())


class EventDelivery(TimestampMixin, Base):
    """One event to one endpoint: retried until it succeeds or the schedule runs out."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "endpoint_id"),
        sa.Index(
            "ix_event_deliveries_due",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_event_deliveries_endpoint_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id"))
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_endpoints.id"))
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'pending'"))
    """pending, succeeded, failed (schedule exhausted; an admin may redeliver)."""
    attempt_count: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(server_default=sa.func.now())
    lease_until: Mapped[datetime | None]
    """A worker holds the delivery until then; another one skips it."""
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())


class DeliveryAttempt(Base):
    """One HTTP request of a delivery and what came back. Append-only."""

    __tablename__ = "event_delivery_attempts"
    __table_args__ = (sa.Index("ix_event_delivery_attempts_delivery_id", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("event_deliveries.id"))
    attempt: Mapped[int] = mapped_column(sa.Integer)
    attempted_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    latency_ms: Mapped[int] = mapped_column(sa.Integer)
    response_excerpt: Mapped[str | None] = mapped_column(sa.Text)
    error: Mapped[str | None] = mapped_column(sa.String(64))
    """timeout, connection_error, target_refused, redirect, http_status."""


class EmailReceipt(TimestampMixin, Base):
    """A receipt sent (or being sent) for an event: at most one per event."""

    __tablename__ = "email_receipts"

    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id"), primary_key=True)
    recipient: Mapped[str] = mapped_column(sa.String(320))
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'sending'"))
    """sending (claimed), sent."""
    sent_at: Mapped[datetime | None]


class BalanceAlert(TimestampMixin, Base):
    """A user's low-balance threshold for one currency, and which side of it they are."""

    __tablename__ = "balance_alerts"

    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    threshold: Mapped[int] = mapped_column(sa.BigInteger)
    below: Mapped[bool] = mapped_column(server_default=sa.text("false"))
    """True after ``balance.low`` was emitted, until available is back at the threshold."""
