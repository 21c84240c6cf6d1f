from __future__ import annotations

from tests.orders.conftest import stripe_payins  # noqa: F401 - card orders' Stripe mocks
