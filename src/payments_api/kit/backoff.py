"""How long to wait before the next attempt of something that failed (a webhook event,
a withdrawal's Stripe call, a sandbox delivery): doubling from ``first``, capped."""

from __future__ import annotations

from datetime import timedelta


def doubling_delay(attempts: int, *, first: timedelta, cap: timedelta) -> timedelta:
    """``first`` after the first failed attempt, then twice as long each time, at most
    ``cap``. ``attempts`` counts the attempts made so far (0 and 1 both give ``first``)."""
    delay = first
    for _ in range(max(attempts - 1, 0)):
        delay *= 2
        if delay >= cap:
            return cap
    return min(delay, cap)  # also when the first delay is already past the cap
