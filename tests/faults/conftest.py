from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from tests.faults.fake_stripe import FakeStripe

# The in-process sandbox (the app in sandbox mode, its Stripe calls looped back into it),
# as tests/sandbox mounts it: the fault matrix's stateful Stripe (issue #17).
from tests.sandbox.conftest import (  # noqa: F401 - fixtures
    sandbox,
    sandbox_app,
    sandbox_gateway,
    sandbox_settings,
)


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    """A stateful Stripe behind respx: every outgoing Stripe call of the app reaches it.
    Only the fault matrix still uses it (issue #17: to run over the sandbox, with faults
    injected by respx)."""
    fake = FakeStripe()
    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        yield fake
