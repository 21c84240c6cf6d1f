from __future__ import annotations

# The stateful fake Stripe (respx) shared with the contract tests.
from tests.contract.conftest import fake_stripe

__all__ = ["fake_stripe"]
