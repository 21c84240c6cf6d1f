"""The expected arrival of a withdrawal from a payout schedule."""

from __future__ import annotations

from datetime import date

import pytest

from payments_api.payouts.schedule import expected_arrival

THURSDAY = date(2026, 12, 3)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (None, date(2026, 12, 5)),  # unknown: the default delay
        ({"interval": "daily", "delay_days": 7}, date(2026, 12, 10)),
        ({"interval": "daily", "delay_days": 0}, THURSDAY),
        # payable Saturday the 5th, paid the following Friday
        ({"interval": "weekly", "delay_days": 2, "weekly_anchor": "friday"}, date(2026, 12, 11)),
        ({"interval": "weekly", "delay_days": 1, "weekly_anchor": "friday"}, date(2026, 12, 4)),
        ({"interval": "monthly", "delay_days": 2, "monthly_anchor": 15}, date(2026, 12, 15)),
        ({"interval": "monthly", "delay_days": 2, "monthly_anchor": 1}, date(2027, 1, 1)),
        # the anchor past a short month's end: its last day
        ({"interval": "monthly", "delay_days": 60, "monthly_anchor": 31}, date(2027, 2, 28)),
        ({"interval": "manual", "delay_days": 2}, None),
    ],
)
def test_expected_arrival(schedule: dict[str, object] | None, expected: date | None) -> None:
    assert expected_arrival(schedule, start=THURSDAY, default_delay_days=2) == expected
