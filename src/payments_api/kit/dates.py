"""Calendar days as the API declares them: ``format: date``, i.e. ``YYYY-MM-DD``.

Pydantic's lax ``date`` also takes Unix timestamps (``0``, ``"0"``, ``86400``) that fall
on midnight, which the declared schema does not allow; ``IsoDate`` refuses them (and any
other spelling) with a 422, so the service and its spec agree.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: Any) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _FULL_DATE.fullmatch(value):
        return value
    raise ValueError("must be a calendar day written YYYY-MM-DD (e.g. 2026-11-22)")


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
"""A calendar day, accepted only as ``YYYY-MM-DD`` (or a ``date`` from Python code)."""
