"""The sandbox's own tables: Stripe objects, idempotency records and an event outbox.

Nothing outside the sandbox package reads these tables: the service sees the sandbox
only through the Stripe API (``/sandbox/stripe/v1``) and signed webhooks, exactly as it
sees Stripe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin

EVENT_STATUSES = ("pending", "delivered", "failed")


class SandboxObject(TimestampMixin, Base):
    """One Stripe object (customer, charge, account, ...) in Stripe's JSON shape."""

    __tablename__ = "sandbox_objects"
    __table_args__ = (
        sa.UniqueConstraint("seq"),
        sa.Index("ix_sandbox_objects_type_account_seq", "type", "account", "seq"),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    """Stripe's id with its prefix (``ch_...``, ``acct_...``)."""
    seq: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity())
    """Insertion order: lists are newest first, like Stripe's."""
    type: Mapped[str] = mapped_column(sa.String(64))
    """Stripe's ``object`` value (``charge``, ``checkout.session``, ...)."""
    account: Mapped[str | None] = mapped_column(sa.String(255))
    """The connected account the object lives on (``Stripe-Account``); None: platform."""
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    """The object exactly as the API returns it (ids, not expanded objects)."""
    private: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sa.text("'{}'::jsonb"))
    """What Stripe keeps but does not return (line items, link redirect URLs, ...)."""
    updated_at: Mapped[datetime] = mapped_column(server_default=sa.func.now())


class SandboxIdempotencyKey(TimestampMixin, Base):
    """A POST's Idempotency-Key with the response it produced (Stripe keeps 24 h)."""

    __tablename__ = "sandbox_idempotency_keys"

    scope: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    """``Stripe-Account`` of the request, or empty for the platform."""
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    """SHA-256 of method, path and parameters: the same key with other ones is refused."""
    status_code: Mapped[int] = mapped_column(sa.Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_id: Mapped[str] = mapped_column(sa.String(64))


class SandboxEvent(TimestampMixin, Base):
    """An event the sandbox emitted, kept until the service's webhook route took it.

    Written in the transaction of the state change it reports, delivered after that
    commits, retried with backoff until a 2xx (or ``failed`` after the last attempt).
    """

    __tablename__ = "sandbox_events"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in EVENT_STATUSES) + ")", name="status"
        ),
        sa.UniqueConstraint("seq"),
        sa.Index(
            "ix_sandbox_events_next_attempt_at",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    """``evt_...``."""
    seq: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity())
    type: Mapped[str] = mapped_column(sa.String(128))
    account: Mapped[str | None] = mapped_column(sa.String(255))
    """Set for Connect events: they go to the Connect webhook endpoint."""
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'pending'"))
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(server_default=sa.func.now())
    last_status: Mapped[int | None] = mapped_column(sa.Integer)
    """HTTP status of the last attempt (None: no answer)."""
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    delivered_at: Mapped[datetime | None]
