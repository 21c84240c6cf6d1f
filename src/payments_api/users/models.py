from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, Boolean, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from payments_api.db import Base, TimestampMixin


class User(TimestampMixin, Base):
    """A person known to the platform's auth; created on the first request we see."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    """The JWT `sub` of the platform's auth."""
    roles: Mapped[list[str]] = mapped_column(
        ARRAY(String(16)), server_default=text("'{}'::varchar[]")
    )
    """Roles from the latest token seen (customer, payee, admin)."""
    email: Mapped[str | None] = mapped_column(String(320))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    """Stripe Customer created once for this user and reused."""
    frozen: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    """A frozen wallet cannot withdraw (admin action or an open dispute)."""
    frozen_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
