"""Dispute counters for ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter

DISPUTE_TRANSITIONS = Counter(
    "payments_dispute_transitions_total",
    "Dispute statuses applied from Stripe's events.",
    ["status"],
)
DISPUTE_EVENTS_SKIPPED = Counter(
    "payments_dispute_events_skipped_total",
    "Dispute events acknowledged without effect: stale (older than the state applied) or "
    "illegal_transition.",
    ["reason"],
)
DISPUTE_FUNDS = Counter(
    "payments_dispute_funds_minor_total",
    "Minor units Stripe withdrew for disputes and reinstated, per currency.",
    ["direction", "currency"],
)
