"""Stored Idempotency-Keys: one row per (user, key), holding the first response."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin


class IdempotencyStatus(StrEnum):
    in_flight = "in_flight"
    completed = "completed"


_STATUSES = ", ".join(f"'{s.value}'" for s in IdempotencyStatus)


class IdempotencyKey(TimestampMixin, Base):
    """A write request identified by its caller's Idempotency-Key.

    ``in_flight`` while the first request runs (under a lease), then ``completed`` with
    the response to replay. Rows of requests that failed (5xx, crash) are deleted so a
    retry executes again. Pruned after ``expires_at``.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "key"),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        sa.CheckConstraint(
            "(status = 'in_flight') = (locked_until IS NOT NULL)", name="lease_matches_status"
        ),
        sa.CheckConstraint(
            "(status = 'completed') = (response_status IS NOT NULL AND response_body IS NOT NULL)",
            name="response_matches_status",
        ),
        sa.CheckConstraint("expires_at > created_at", name="expires_after_created"),
        sa.Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(255))
    """The caller (JWT `sub`); keys are scoped per user. No FK: the row is written before
    the route has created the user on first sight."""
    key: Mapped[str] = mapped_column(sa.String(255))
    """The Idempotency-Key header as sent."""
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    """SHA-256 of method, path, query and canonical JSON body."""
    request_method: Mapped[str] = mapped_column(sa.String(16))
    request_path: Mapped[str] = mapped_column(sa.Text)
    """The first request's path, to explain a reuse and for operators."""
    status: Mapped[str] = mapped_column(sa.String(16))
    lease_token: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    """Changes with every claim, so a request that lost its lease (it outlived it and a
    retry took over) can no longer store, renew or release the key."""
    locked_until: Mapped[datetime | None]
    """End of the lease of the request in flight; renewed while it runs. Past it, the
    holder is presumed crashed and a retry may take the key over."""
    response_status: Mapped[int | None] = mapped_column(sa.SmallInteger)
    response_headers: Mapped[list[list[str]] | None] = mapped_column(JSONB)
    """``[name, value]`` pairs of the replay-safe headers (content-type, location, ...)."""
    response_body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    """The response body exactly as first sent."""
    expires_at: Mapped[datetime]
    """Replayed until then (created_at + retention, >= 24 h); pruned after."""
