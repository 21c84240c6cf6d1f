from __future__ import annotations

# Stripe's Checkout and customers as respx answers them (test_currency_steps).
from tests.orders.conftest import stripe_payins

# The in-process sandbox (tests/sandbox/conftest.py) for tests that need Stripe to keep
# what the app made: the owner world of test_security.
from tests.sandbox.conftest import sandbox, sandbox_app, sandbox_gateway, sandbox_settings

__all__ = ["sandbox", "sandbox_app", "sandbox_gateway", "sandbox_settings", "stripe_payins"]
