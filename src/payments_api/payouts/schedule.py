"""When a withdrawal should reach the payee's bank, from the connected account's payout
schedule (Stripe's ``settings.payouts.schedule``).

A withdrawal is a Transfer to the connected account; Stripe then pays the account's
balance out on its schedule: the money becomes payable ``delay_days`` after it arrived,
and is paid out that day (``daily``), on the next ``weekly_anchor`` weekday (``weekly``)
or on the next ``monthly_anchor`` day of a month (``monthly``, the month's last day when
it is shorter). ``manual`` payouts have no date to expect. An estimate in calendar days:
Stripe counts some delays in business days and banks add their own.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def expected_arrival(
    schedule: dict[str, Any] | None, *, start: date, default_delay_days: int
) -> date | None:
    """The expected arrival of money transferred on ``start``; None for manual payouts."""
    schedule = schedule or {}
    interval = schedule.get("interval") or "daily"
    if interval == "manual":
        return None
    delay = schedule.get("delay_days")
    payable = start + timedelta(days=delay if isinstance(delay, int) else default_delay_days)
    if interval == "weekly":
        anchor = schedule.get("weekly_anchor")
        if anchor in WEEKDAYS:
            return payable + timedelta(days=(WEEKDAYS.index(anchor) - payable.weekday()) % 7)
    if interval == "monthly":
        anchor = schedule.get("monthly_anchor")
        if isinstance(anchor, int) and 1 <= anchor <= 31:
            year, month = payable.year, payable.month
            while True:
                day = min(anchor, calendar.monthrange(year, month)[1])
                candidate = date(year, month, day)
                if candidate >= payable:
                    return candidate
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return payable
