from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """The one clock of the service: timezone-aware UTC."""
    return datetime.now(UTC)


def stripe_time(value: Any) -> datetime | None:
    """A time as Stripe writes it (Unix seconds), or None when it is absent."""
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None
