"""Refund counters for ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter

REFUNDS = Counter(
    "payments_refunds_total",
    "Refund lifecycle steps: requested, recorded (made outside the API), succeeded, "
    "failed, canceled, rejected (refused by Stripe at creation).",
    ["origin", "outcome"],
)
