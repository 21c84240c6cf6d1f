"""``kit.backoff.doubling_delay``: the retry schedules of webhook events, Stripe operations
(withdrawals) and the sandbox's deliveries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from payments_api.kit.backoff import doubling_delay
from payments_api.kit.stripe_operation import RETRY_POLICY
from payments_api.webhooks.service import retry_delay as webhook_delay
from payments_sandbox.events import retry_delay as sandbox_delay

SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(0, 30), (1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (9, 3600), (10_000, 3600)],
)
def test_doubles_from_the_first_delay_up_to_the_cap(attempts: int, expected: int) -> None:
    assert doubling_delay(attempts, first=30 * SECOND, cap=3600 * SECOND) == expected * SECOND


def test_each_schedule_keeps_its_documented_steps() -> None:
    assert [webhook_delay(n) // SECOND for n in (1, 2, 3, 10, 11, 50)] == [
        30, 60, 120, 15360, 21600, 21600,
    ]  # fmt: skip
    assert [RETRY_POLICY.delay(n) // SECOND for n in (1, 2, 8, 9)] == [30, 60, 3600, 3600]
    assert [sandbox_delay(n) // SECOND for n in (1, 2, 3, 10, 11)] == [5, 10, 20, 2560, 3600]
