from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from tests.contract.fake_stripe import FakeStripe

# The in-process sandbox (tests/sandbox/conftest.py) for tests that need Stripe to keep
# what the app made: the owner world of test_security.
from tests.sandbox.conftest import sandbox, sandbox_app, sandbox_gateway, sandbox_settings

__all__ = ["fake_stripe", "sandbox", "sandbox_app", "sandbox_gateway", "sandbox_settings"]


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    """A stateful Stripe behind respx: every outgoing Stripe call of the app reaches it."""
    fake = FakeStripe()
    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        yield fake
