"""Reading references out of Stripe objects (no ``stripe`` import: domain code uses it)."""

from __future__ import annotations

from typing import Any


def stripe_id(value: Any) -> str | None:
    """The id of a Stripe reference that may be an id or an expanded object, else None."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None
