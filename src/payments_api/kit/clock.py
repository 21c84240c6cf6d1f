from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The one clock of the service: timezone-aware UTC."""
    return datetime.now(UTC)
